"""Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Tensors are raw features (``app.protocols.oip``). Errors are ``{"error": "..."}``: 400 for a
request the protocol or the validator refuses, the usual 401/413/415/503/504 otherwise.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.documentation import documented_post, refusals
from app.api.endpoint import JSON, Answer, Decoded, PredictionEndpoint
from app.api.guard import Guard, Headers
from app.api.models import MODEL_NAME
from app.deps import RuntimeDep
from app.errors import InvalidInput, error_answer, validation_details
from app.flags import Flag
from app.intervals import Ranges
from app.observe.access import RequestRecorder
from app.protocols import oip
from app.runtime import ModelRuntime
from app.schemas import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    OipErrorBody,
    Ready,
    ServerLive,
    ServerMetadata,
    request_adapter,
)
from modelspec.features import encode_records

SERVER_NAME = "housing-inference"
MODEL_PATH = f"/v2/models/{MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Ready, "description": "Not ready: loading, failing, or shutting down"}
}


def _server_version() -> str:
    try:
        return version("housing-inference")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": _server_version(), "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server live", response_model=ServerLive)
async def server_live() -> dict[str, bool]:
    return {"live": True}


def _ready(runtime: ModelRuntime) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)


@router.get(
    "/health/ready",
    summary="Server ready (503 until the model can predict)",
    response_model=Ready,
    responses=NOT_READY,
)
async def server_ready(runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime)


@router.get(
    f"/models/{MODEL_NAME}/ready", summary="Model ready", response_model=Ready, responses=NOT_READY
)
async def model_ready(runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime)


@router.get(
    f"/models/{MODEL_NAME}",
    summary="Model metadata: inputs and outputs",
    response_model=ModelMetadata,
    responses={503: {"model": OipErrorBody, "description": "The model is not loaded yet"}},
)
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


def check_envelope(request: dict[str, Any]) -> None:
    """Refuse (400) the wrong types that ``oip.records_from`` would trip over with a 500, and
    an ``id`` that is not a string (it is echoed, and the protocol's answer has a string id).
    Each of these would otherwise end in a 500: ``"outputs": 5``, ``"parameters": 5``, a list
    as ``datatype``, ``data``, ``shape`` or ``id`` nested a thousand deep (RecursionError in
    flattening, in a message's repr, in the answer's JSON); ``make fuzz`` sends them all."""
    if "id" in request and type(request["id"]) is not str:
        raise oip.OipError('"id" must be a string')
    outputs = request.get("outputs")
    if outputs is not None and type(outputs) is not list:
        raise oip.OipError('"outputs" must be a list')
    for out in outputs or []:
        if type(out) is not dict or out.get("name") != oip.OUTPUT:
            raise oip.OipError(f"the only output is {oip.OUTPUT!r}")
    for tensor in request["inputs"]:
        # An input without a string name: records_from says so.
        if type(tensor) is dict and type(tensor.get("name")) is str:
            _check_tensor(tensor["name"], tensor)


def _check_tensor(name: str, tensor: dict[str, Any]) -> None:
    # Never the value itself in a message: the repr of a deeply nested one is a RecursionError.
    parameters = tensor.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise oip.OipError(f"input {name!r}: parameters must be an object")
    if "datatype" in tensor and type(tensor["datatype"]) is not str:
        raise oip.OipError(f"input {name!r}: datatype must be a string")
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(d) is int for d in shape):
        raise oip.OipError(f"input {name!r}: shape must be a list of integers, [N] or [N, 1]")
    data = tensor.get("data")
    # Shapes are [N] or [N, 1]: values, or one-value lists; deeper is never right.
    if type(data) is list and any(
        type(v) is list and any(type(w) is list for w in v) for v in data
    ):
        raise oip.OipError(f"input {name!r}: data is nested deeper than [N, 1]")


class InferEndpoint(PredictionEndpoint[dict[str, Any]]):
    """``POST /v2/models/housing/infer``."""

    route = f"{MODEL_PATH}/infer"
    media_types = frozenset({JSON, "application/octet-stream", ""})
    # The protocol names its inputs and outputs in the body, not the query.
    query_coverage = False

    def __init__(self, runtime: ModelRuntime, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(runtime, guard, recorder)
        self.adapter = request_adapter(runtime.settings.max_instances)

    def decode(self, body: bytes, headers: Headers) -> Decoded[dict[str, Any]]:
        request, tail = oip.split_body(body, headers.get(b"inference-header-content-length"))
        check_envelope(request)
        records = oip.records_from(request, tail)
        self.adapter.validate_python({"instances": records})
        encoded = encode_records(records, self.runtime.bedrooms_median, validated=True)
        return Decoded(encoded, request)

    def reply(
        self,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[dict[str, Any]],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        """The protocol's outputs; flags are counted in the metrics but not sent (its answer
        has no place for structured per-row notes)."""
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


def document(router: APIRouter) -> None:
    """``POST /v2/models/housing/infer`` in the schema (``app.api.documentation``): the JSON
    envelope is ``InferRequest``; with the binary tensor extension the body is bytes."""
    length = Header(
        alias="Inference-Header-Content-Length",
        ge=0,
        description="Binary tensor extension: the length of the JSON part of the body",
    )
    documented_post(
        router,
        InferEndpoint.route,
        "oip_model_infer",
        {"body": InferRequest, "header_length": (Annotated[int, length], None)},
        tags=["open inference protocol"],
        summary="Infer: house values from the raw features, one tensor each",
        response_model=InferResponse,
        response_description="house_value, FP32 [N]",
        responses={
            400: {
                "model": OipErrorBody,
                "description": "A request the protocol or the feature rules refuse",
            },
            **refusals(OipErrorBody, OipErrorBody),
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }
        },
    )
