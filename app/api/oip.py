"""Open Inference Protocol (KServe v2) routes: health, metadata and ``infer``.

Tensors are raw features (``app.protocols.oip``). Outputs: those the request's ``outputs``
names, in its order, else ``house_value`` and, when the answer has ranges, ``house_value_low``
and ``house_value_high``. The range's coverage is the request's ``parameters.coverage`` (0: no
range), else ``HOUSING_INTERVAL_COVERAGE``; asking for a range output that the answer cannot
have (coverage 0, or a model without intervals) is refused. Errors are ``{"error": "..."}``:
400 for a request the protocol or the validator refuses, the usual 401/413/415/503/504
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from app.errors import InvalidInput, error_answer, invalid_details, summary
from app.flags import Flag
from app.intervals import Coverage, Intervals, Ranges, listed
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
from app.served import Served
from modelspec.features import encode_records

SERVER_NAME = "housing-inference"
MODEL_PATH = f"/v2/models/{MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Ready, "description": "Not ready: loading, failing, or shutting down"}
}


def server_version() -> str:
    try:
        return version("housing-inference")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": server_version(), "extensions": ["binary_tensor_data"]}


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
            "outputs": oip.output_metadata(runtime.intervals.table is not None),
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
    parameters = request.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise oip.OipError('"parameters" must be an object')
    outputs = request.get("outputs")
    if outputs is not None and type(outputs) is not list:
        raise oip.OipError('"outputs" must be a list')
    seen = set()
    for out in outputs or []:
        if type(out) is not dict or out.get("name") not in oip.OUTPUTS:
            raise oip.OipError(f"each output is one of {', '.join(oip.OUTPUTS)}, by name")
        if out["name"] in seen:
            raise oip.OipError(f"output {out['name']!r} asked twice")
        seen.add(out["name"])
        if out.get("parameters") is not None and type(out["parameters"]) is not dict:
            raise oip.OipError(f"output {out['name']!r}: parameters must be an object")
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


@dataclass(slots=True)
class Inference:
    """A checked request, the outputs to answer (in order) and the coverage of their range."""

    request: dict[str, Any]
    outputs: tuple[str, ...]
    coverage: Coverage | None


class InferEndpoint(PredictionEndpoint[Inference]):
    """``POST /v2/models/housing/infer``."""

    route = f"{MODEL_PATH}/infer"
    media_types = frozenset({JSON, "application/octet-stream", ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(runtime, guard, recorder)
        self.adapter = request_adapter(runtime.settings.max_instances)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[Inference]:
        request, tail = oip.split_body(body, headers.get(b"inference-header-content-length"))
        return self.decode_request(model, request, tail)

    def decode_request(
        self, model: Served, request: dict[str, Any], tail: bytes
    ) -> Decoded[Inference]:
        """A request's JSON envelope and binary tail (HTTP's body, or a gRPC message's:
        ``app.rpc.tensors``) into encoded rows and the plan of its answer."""
        check_envelope(request)
        records = oip.records_from(request, tail)
        self.adapter.validate_python({"instances": records})
        encoded = encode_records(records, model.bedrooms_median, validated=True)
        return Decoded(encoded, self.plan(model.intervals, request))

    @staticmethod
    def plan(intervals: Intervals, request: dict[str, Any]) -> Inference:
        """The outputs and coverage of an answer to ``request`` (its envelope checked), by the
        model's ``intervals``."""
        coverage = intervals.default
        parameters = request.get("parameters") or {}
        if "coverage" in parameters:
            value = parameters["coverage"]
            number = type(value) in (int, float) and abs(value) <= 1
            coverage = intervals.at(float(value) if number else -1.0, "parameters.coverage")
        asked = tuple(out["name"] for out in request.get("outputs") or ())
        if not asked:
            names = (oip.OUTPUT,) if coverage is None else oip.OUTPUTS
            return Inference(request, names, coverage)
        if oip.LOW not in asked and oip.HIGH not in asked:
            return Inference(request, asked, None)  # no range to compute
        if coverage is None:
            if intervals.table is None:
                raise oip.OipError(
                    f"{oip.LOW} and {oip.HIGH} need calibrated intervals, and this model has "
                    "none (it was trained before them): retrain with `python -m training` and "
                    "recompile"
                )
            why = (
                "parameters.coverage is 0"
                if "coverage" in parameters
                else "the server's default coverage (HOUSING_INTERVAL_COVERAGE) is 0"
            )
            raise oip.OipError(
                f"{oip.LOW} and {oip.HIGH} are a price range, and {why}: ask with "
                f"parameters.coverage, one of {listed(intervals.coverages)}"
            )
        return Inference(request, asked, coverage)

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
        if isinstance(exc, oip.OipError):
            return Answer(orjson.dumps({"error": str(exc)}), JSON, 400)
        if isinstance(exc, ValidationError | InvalidInput):
            details, total = invalid_details(exc, self.max_errors)
            # instances.3.latitude -> row 3 of input latitude
            rows = [{**d, "field": d["field"].replace("instances.", "row ")} for d in details]
            checked = exc.checked if isinstance(exc, InvalidInput) else None
            return Answer(orjson.dumps({"error": summary(rows, total, checked)}), JSON, 400)
        status, payload, extra = error_answer(exc, self.route, request_id, self.max_errors)
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
