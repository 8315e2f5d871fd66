"""Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Tensors are raw features (``app.protocols.oip``). Errors are ``{"error": "..."}``: 400 for a
request the protocol or the validator refuses, the usual 401/413/415/503/504 otherwise.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.endpoint import JSON, Answer, Decoded, Guard, PredictionEndpoint
from app.api.models import MODEL_NAME
from app.deps import RuntimeDep
from app.errors import InvalidInput, error_answer, validation_details
from app.observe.access import Observer
from app.protocols import oip
from app.runtime import ModelRuntime
from app.schemas import request_adapter
from modelspec.features import encode_records

SERVER_NAME = "housing-inference"
MODEL_PATH = f"/v2/models/{MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])


def _server_version() -> str:
    try:
        return version("housing-inference")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": _server_version(), "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


def _ready(runtime: ModelRuntime) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)


@router.get("/health/ready", summary="Server ready (503 until the model can predict)")
async def server_ready(runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime)


@router.get(f"/models/{MODEL_NAME}/ready", summary="Model ready")
async def model_ready(runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime)


@router.get(f"/models/{MODEL_NAME}", summary="Model metadata: inputs and outputs")
async def model_metadata(runtime: RuntimeDep) -> JSONResponse:
    manifest = runtime.manifest
    if manifest is None or manifest.compiled is None:
        return JSONResponse({"error": "the model is not loaded yet"}, status_code=503)
    platform = "neuronx_torchscript" if manifest.compiled.target == "neuron" else "pytorch_libtorch"
    return JSONResponse(
        {
            "name": MODEL_NAME,
            "versions": [manifest.model_version],
            "platform": platform,
            "inputs": oip.input_metadata(),
            "outputs": oip.output_metadata(),
        }
    )


class InferEndpoint(PredictionEndpoint):
    """``POST /v2/models/housing/infer``."""

    route = f"{MODEL_PATH}/infer"
    media_types = frozenset({JSON, "application/octet-stream", ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, observer: Observer) -> None:
        super().__init__(runtime, guard, observer)
        self.adapter = request_adapter(runtime.settings.max_instances)

    def decode(self, body: bytes, headers: dict[bytes, bytes]) -> Decoded:
        request, tail = oip.split_body(body, headers.get(b"inference-header-content-length"))
        for out in request.get("outputs") or []:
            if type(out) is not dict or out.get("name") != oip.OUTPUT:
                raise oip.OipError(f"the only output is {oip.OUTPUT!r}")
        records = oip.records_from(request, tail)
        self.adapter.validate_python({"instances": records})
        return Decoded(encode_records(records, self.runtime.bedrooms_median), request)

    def reply(self, values: list[float], decoded: Decoded, headers: dict[bytes, bytes]) -> Answer:
        assert self.runtime.manifest is not None
        version = self.runtime.manifest.model_version
        return Answer(oip.response(decoded.context, MODEL_NAME, version, values))

    def refuse(self, exc: Exception, request_id: str) -> Answer:
        if isinstance(exc, oip.OipError):
            return Answer(orjson.dumps({"error": str(exc)}), JSON, 400)
        if isinstance(exc, ValidationError | InvalidInput):
            details = (
                exc.details if isinstance(exc, InvalidInput) else validation_details(exc.errors())
            )
            # instances.3.latitude -> row 3 of input latitude
            message = "; ".join(
                f"{d['field'].replace('instances.', 'row ')}: {d['message']}" for d in details
            )
            return Answer(orjson.dumps({"error": message}), JSON, 400)
        status, payload, extra = error_answer(exc, self.route, request_id)
        body: dict[str, Any] = {"error": payload.get("detail")}
        if "error_id" in payload:
            body["error_id"] = payload["error_id"]
        return Answer(orjson.dumps(body), JSON, status, tuple(extra.items()))
