"""Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Tensors are raw features (``app.codecs.oip``). Outputs: those the request's ``outputs``
names, in its order, else ``house_value`` and, when the answer has ranges, ``house_value_low``
and ``house_value_high``. The range's coverage is the request's ``parameters.coverage`` (0: no
range), else ``HOUSING_INTERVAL_COVERAGE``; asking for a range output that the answer cannot
have (coverage 0, or a model without intervals) is refused. Errors are ``{"error": "..."}``:
400 for a request the protocol or the validator refuses, the usual 401/413/415/503/504
otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from app.codecs import oip
from app.codecs.oip_infer import Inference, InferRequests, invalid_text
from app.codecs.schemas import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    OipErrorBody,
    Ready,
    ServerLive,
    ServerMetadata,
)
from app.core.flags import Flag
from app.core.inference import Decoded, InferencePath
from app.core.intervals import Coverage, Ranges
from app.core.runtime import ModelRuntime
from app.core.served import Served
from app.errors import Refusal, classify
from app.http.deps import RuntimeDep
from app.http.endpoint import JSON, Answer, PredictionEndpoint
from app.http.guard import Guard, Headers
from app.http.openapi import documented_post, refusals
from app.http.refusals import error_answer
from app.identity import EXTENSIONS, MODEL_NAME, SERVER_NAME, server_version
from app.observe.access import RequestRecorder

MODEL_PATH = f"/v2/models/{MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Ready, "description": "Not ready: loading, failing, or shutting down"}
}


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}


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
    ranges = runtime.intervals.table is not None
    target = manifest.compiled.target
    return JSONResponse(oip.model_metadata(manifest.model_version, target, ranges))


class InferEndpoint(PredictionEndpoint[Inference]):
    """``POST /v2/models/housing/infer``."""

    route = f"{MODEL_PATH}/infer"
    media_types = frozenset({JSON, "application/octet-stream", ""})

    def __init__(self, plane: InferencePath, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(plane, guard, recorder)
        self.requests = InferRequests(plane.runtime.settings.max_instances)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[Inference]:
        request, tail = oip.split_body(body, headers.get(b"inference-header-content-length"))
        return self.requests.decode(model, request, tail)

    def asked_coverage(self, model: Served, query: bytes, headers: Headers) -> Coverage | None:
        return None  # the protocol asks in the body (``plan``), not the query

    def coverage_for(
        self, model: Served, decoded: Decoded[Inference], asked: Coverage | None
    ) -> Coverage | None:
        return decoded.context.coverage

    def reply(
        self,
        model: Served,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[Inference],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        """The protocol's outputs; flags are summed up in the answer's ``parameters`` (it has
        no place for structured per-row notes)."""
        plan = decoded.context
        answer = oip.response(
            plan.request, MODEL_NAME, model.version, plan.outputs, values, ranges, flags
        )
        return Answer(answer)

    def refuse(self, exc: Exception, request_id: str) -> Answer:
        if classify(exc) is Refusal.INVALID:
            text = invalid_text(exc, self.max_errors)
            return Answer(orjson.dumps({"error": text}), JSON, 400)
        status, payload, extra = error_answer(exc, self.route, request_id, self.max_errors)
        body: dict[str, Any] = {"error": payload.get("detail")}
        if "error_id" in payload:
            body["error_id"] = payload["error_id"]
        return Answer(orjson.dumps(body), JSON, status, tuple(extra.items()))


def document(router: APIRouter) -> None:
    """``POST /v2/models/housing/infer`` in the schema (``app.http.openapi``): the JSON
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
        response_description="house_value, FP64 [N]",
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
