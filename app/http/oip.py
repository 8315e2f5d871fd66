"""Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Tensors are raw features (``app.codecs.oip``). Outputs: those the request's ``outputs``
names, in its order, else ``house_value`` and, when the answer has ranges, ``house_value_low``
and ``house_value_high``. The range's coverage is the request's ``parameters.coverage`` (0: no
range), else ``HOUSING_INTERVAL_COVERAGE``; asking for a range output that the answer cannot
have (coverage 0, or a model without intervals) is refused. Errors are ``{"error": "..."}``:
400 for a request the protocol or the validator refuses, the usual 401/413/415/503/504
otherwise, and 404 for a model, version or path under ``/v2`` that this server does not have
(``app.http.refusals``).

Versions: ``/v2/models/housing/versions/{version}`` (metadata), ``.../ready`` and
``.../infer`` answer as the unversioned routes when ``version`` is the version in service, and
404 (``{"error": ...}``, the text of the gRPC door's NOT_FOUND) for any other; before a model
is loaded they answer as the unversioned routes do then (503). The versioned ``infer`` is a
bare endpoint too (``VersionedInfer``), reached by ``HousingApp``'s pattern match.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from app.codecs import oip
from app.codecs.oip_infer import Inference, InferRequests, invalid_text
from app.core.flags import Flag
from app.core.inference import Decoded, InferencePath
from app.core.intervals import Coverage, Ranges
from app.core.runtime import ModelRuntime
from app.core.served import Served
from app.errors import Refusal, RequestRefused, classify
from app.http.bodies import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    OipErrorBody,
    Ready,
    ServerLive,
    ServerMetadata,
)
from app.http.deps import RuntimeDep
from app.http.endpoint import JSON, Answer, PredictionEndpoint
from app.http.guard import Guard, Headers
from app.http.openapi import documented_post, refusals
from app.http.refusals import error_answer
from app.identity import MODEL_NAME
from app.observe.access import RequestRecorder

MODEL_PATH = f"/v2/models/{MODEL_NAME}"
# The scope key through which ``VersionedInfer`` tells ``infer`` the version a path names.
VERSION_KEY = "housing.model_version"
VERSIONS = f"{MODEL_PATH}/versions/"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Ready, "description": "Not ready: loading, failing, or shutting down"}
}
NO_VERSION: dict[int | str, dict[str, Any]] = {
    404: {"model": OipErrorBody, "description": "Another version than the one in service"}
}
NOT_LOADED: dict[int | str, dict[str, Any]] = {
    503: {"model": OipErrorBody, "description": "The model is not loaded yet"}
}
VersionPath = Annotated[str, Path(description="The version in service (X-Model-Version)")]


def version_refusal(model: Served | None, version: str) -> JSONResponse | None:
    """A 404 for a version other than ``model``'s (the one in service); None when it is that
    one, or when no model is loaded yet (the route then answers as its unversioned twin: 503)."""
    try:
        oip.check_version(version, model)
    except RequestRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return None


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return oip.server_metadata()


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
    f"/models/{MODEL_NAME}/versions/{{version}}/ready",
    summary="Model version ready",
    response_model=Ready,
    responses={**NO_VERSION, **NOT_READY},
)
async def model_version_ready(runtime: RuntimeDep, version: VersionPath) -> JSONResponse:
    return version_refusal(runtime.model, version) or _ready(runtime)


@router.get(
    f"/models/{MODEL_NAME}",
    summary="Model metadata: inputs and outputs",
    response_model=ModelMetadata,
    responses=NOT_LOADED,
)
async def model_metadata(runtime: RuntimeDep) -> JSONResponse:
    return _metadata(runtime.model)


@router.get(
    f"/models/{MODEL_NAME}/versions/{{version}}",
    summary="Model version metadata: inputs and outputs",
    response_model=ModelMetadata,
    responses={**NO_VERSION, **NOT_LOADED},
)
async def model_version_metadata(runtime: RuntimeDep, version: VersionPath) -> JSONResponse:
    model = runtime.model  # read once: a reload cannot answer for a version it did not check
    return version_refusal(model, version) or _metadata(model)


def _metadata(model: Served | None) -> JSONResponse:
    if model is None:
        return JSONResponse({"error": "the model is not loaded yet"}, status_code=503)
    return JSONResponse(oip.model_metadata(model))


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

    def check_target(self, scope: Scope, model: Served) -> None:
        """A versioned path's version must be the one in service (``VersionedInfer``)."""
        version = scope.get(VERSION_KEY)
        if version is not None:
            oip.check_version(version, model)

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
        answer = oip.response(plan.request, model.version, plan.outputs, values, ranges, flags)
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


class VersionedInfer:
    """``POST /v2/models/housing/versions/{version}/infer``: ``infer`` itself, told the
    version (``VERSION_KEY`` in the request's scope): the same checks in the same order --
    method, key, content type -- then a 404 naming the served version for any other, counted
    as ``infer``'s refusals are. ``HousingApp`` sends it the paths of that shape (``version``),
    before FastAPI's routing, as it does ``infer``'s."""

    route = f"{VERSIONS}{{version}}/infer"
    suffix = "/infer"

    def __init__(self, infer: InferEndpoint) -> None:
        self.infer = infer

    @classmethod
    def version(cls, path: str) -> str | None:
        """The version a path of this route names, or None for a path of another shape."""
        if not (path.startswith(VERSIONS) and path.endswith(cls.suffix)):
            return None
        version = path[len(VERSIONS) : -len(cls.suffix)]
        return version if version and "/" not in version else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = self.version(scope["path"])
        await self.infer({**scope, VERSION_KEY: version}, receive, send)


def document(router: APIRouter) -> None:
    """``POST /v2/models/housing/infer`` in the schema (``app.http.openapi``): the JSON
    envelope is ``InferRequest``; with the binary tensor extension the body is bytes."""
    length = Header(
        alias="Inference-Header-Content-Length",
        ge=0,
        description="Binary tensor extension: the length of the JSON part of the body",
    )
    documentation: dict[str, Any] = {
        "tags": ["open inference protocol"],
        "response_model": InferResponse,
        "response_description": "house_value, FP64 [N]",
        "openapi_extra": {
            "requestBody": {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }
        },
    }
    answers: dict[int | str, Any] = {
        400: {
            "model": OipErrorBody,
            "description": "A request the protocol or the feature rules refuse",
        },
        **refusals(OipErrorBody, OipErrorBody),
    }
    parameters: dict[str, Any] = {
        "body": InferRequest,
        "header_length": (Annotated[int, length], None),
    }
    documented_post(
        router,
        InferEndpoint.route,
        "oip_model_infer",
        parameters,
        summary="Infer: house values from the raw features, one tensor each",
        responses=answers,
        **documentation,
    )
    documented_post(
        router,
        VersionedInfer.route,
        "oip_model_version_infer",
        {"version": VersionPath, **parameters},
        summary="Infer on a version: the version in service, else 404",
        responses={**answers, **NO_VERSION},
        **documentation,
    )
