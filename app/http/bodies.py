"""The documented bodies of the HTTP routes: errors, readiness, model information and the Open
Inference Protocol's. The OpenAPI schema (``GET /openapi.json``) is built from them, and
``python -m reliability.fuzz`` checks every answer against it. (The request validators and
the prediction answers are ``app.codecs.schemas``'.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.json_schema import SkipJsonSchema

from modelspec.features import (
    CATEGORICAL_COLUMN,
    EXAMPLE_RECORD,
    RAW_COLUMNS,
)
from modelspec.intervals import COVERAGES

# Bodies below are documentation: the OpenAPI schema (GET /openapi.json) is built from them, and
# `python -m reliability.fuzz` checks every answer against it. Errors and protocol bodies forbid
# unknown properties, so an answer that grows a field (an echoed input, a stack trace) stops
# conforming; informational bodies (readiness, model info) may grow fields.


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(_Closed):
    field: str = Field(
        description="Where: a field name, `instances.3.latitude`, `line 2.latitude` (CSV), "
        "or `body`"
    )
    message: str = Field(description="What is wrong, never the value sent")
    type: str = Field(description="Machine-readable reason, e.g. `greater_than`, `json_invalid`")


class ValidationErrors(_Closed):
    """422 of ``/predict`` and ``/invocations``: every problem of the body, each with its field."""

    detail: list[FieldError] = Field(
        min_length=1,
        description="The first errors, in the body's order (HOUSING_MAX_ERROR_DETAILS)",
    )
    error_count: int | None = Field(
        None,
        description="How many errors were found, when there are more than listed: in the "
        "whole body, or in lines 1 to checked_lines",
    )
    checked_lines: int | None = Field(
        None,
        description="/invocations line bodies: once the list is full, the rest of the body is "
        "not checked; error_count counts the errors of lines 1 to this one",
    )


class ErrorMessage(_Closed):
    """A refusal (401, 405, 413, 415, 503, 504): what happened and, where it helps, a hint."""

    detail: str


class InternalError(_Closed):
    """500: never a stack trace; ``error_id`` is the request id, also on the logged trace."""

    detail: Literal["internal error"]
    error_id: str


class OipErrorBody(_Closed):
    """Open Inference Protocol errors: ``{"error": "..."}`` (and ``error_id`` on a 500)."""

    error: str
    error_id: str | SkipJsonSchema[None] = None


class Readiness(BaseModel):
    """Readiness, with what is loaded: the same body for 200 (ready) and 503 (not ready)."""

    status: str = Field(description="`starting`, `ready`, `failing` or `stopping`")
    device: str | None = Field(description="`neuron`, `xla` or `cpu`; null until loaded")
    model_version: str | None = Field(description="First 12 hex digits of the artifact's sha256")
    target: str | SkipJsonSchema[None] = Field(None, description="`neuron` or `cpu`")
    batch_sizes: list[int] | SkipJsonSchema[None] = Field(None, description="Compiled sizes")
    consecutive_failures: int | SkipJsonSchema[None] = Field(
        None, description="While `failing`: device calls that failed in a row"
    )


class ArtifactInfo(BaseModel):
    file: str
    sha256: str
    target: str
    batch_sizes: list[int]
    dynamic_batch: bool
    compiler_args: list[str]
    compiled_at: str
    torch_version: str
    max_abs_diff_dollars: float


class FeaturesInfo(BaseModel):
    hash: str = Field(description="sha256 of the feature definition (modelspec.features)")
    inputs: list[str]


class TrainingSummary(BaseModel):
    data: str
    rows_train: int
    rows_val: int
    epochs: int
    created_at: str
    metrics: dict[str, float]


class BatchingInfo(BaseModel):
    max_batch_size: int | None
    max_delay_ms: float
    queue_rows: int


class IntervalsInfo(BaseModel):
    coverages: list[float] = Field(
        description="The coverages a request may ask for (`?coverage=`); empty: the model has "
        "no calibrated ranges"
    )
    default_coverage: float = Field(description="HOUSING_INTERVAL_COVERAGE (0: no ranges)")
    method: str | None


class ModelInfo(BaseModel):
    """``GET /v1/models/housing``: what is served, where, and how it was made."""

    name: str
    version: str
    status: str
    device: str | None
    artifact: ArtifactInfo
    features: FeaturesInfo
    training: TrainingSummary
    batching: BatchingInfo
    intervals: IntervalsInfo


# Open Inference Protocol (KServe v2) bodies, as this server takes and answers them.
# The datatypes ``app.codecs.oip`` reads: its NUMERIC_TYPES, and BYTES (ocean_proximity).
OipDatatype = Literal[
    "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
    "UINT8", "UINT16", "UINT32", "UINT64", "BYTES",
]  # fmt: skip
OipScalar = float | str | None
Rows = Annotated[int, Field(ge=1)]


class TensorMetadata(_Closed):
    name: str
    datatype: OipDatatype
    shape: list[int] = Field(description="-1: any size (the batch)")


class ServerMetadata(_Closed):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(_Closed):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Reloaded(_Closed):
    name: str
    version: str = Field(description="The model serving now")
    previous_version: str = Field(description="The model that served before the reload")
    changed: bool = Field(description="False: the artifact was the one already serving")
    seconds: float = Field(description="Time to load, check and swap in the new model")


class ServerLive(_Closed):
    live: bool


class Ready(_Closed):
    ready: bool


class InferParameters(BaseModel):
    binary_data_size: int | SkipJsonSchema[None] = Field(
        None, ge=0, description="Binary tensor extension: this input's bytes after the JSON"
    )


class InferInput(_Closed):
    name: str = Field(
        description="A raw feature; total_bedrooms may be left out",
        json_schema_extra={"enum": list(RAW_COLUMNS)},
    )
    shape: tuple[Rows] | tuple[Rows, Literal[1]] = Field(
        description="`[N]` or `[N, 1]`; the same N for every input"
    )
    datatype: OipDatatype = Field(
        description="BYTES for ocean_proximity; a numeric type (e.g. FP32) for the others"
    )
    data: list[OipScalar | list[OipScalar]] | SkipJsonSchema[None] = Field(
        None,
        description="N values, flat or as `[N, 1]`; null for a missing total_bedrooms. "
        "Absent when the data is binary (parameters.binary_data_size)",
    )
    parameters: InferParameters | SkipJsonSchema[None] = None


OipOutputName = Literal["house_value", "house_value_low", "house_value_high"]


class InferRequestedOutput(_Closed):
    name: OipOutputName = Field(
        description="house_value_low and house_value_high: the price's range, at "
        "parameters.coverage"
    )
    parameters: dict[str, Any] | SkipJsonSchema[None] = None


class InferRequestParameters(BaseModel):
    coverage: float | SkipJsonSchema[None] = Field(
        None,
        description="The coverage of house_value_low and house_value_high (0: no range); "
        "the server's default without it",
        json_schema_extra={"enum": [0, *COVERAGES]},
    )


def _tensor(name: str) -> dict[str, Any]:
    datatype = "BYTES" if name == CATEGORICAL_COLUMN else "FP32"
    return {"name": name, "shape": [1], "datatype": datatype, "data": [EXAMPLE_RECORD[name]]}


class InferRequest(_Closed):
    """The raw features, one tensor each (``total_bedrooms`` may be left out)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "r-1",
                    "inputs": [_tensor(name) for name in RAW_COLUMNS],
                    "parameters": {"coverage": 0.9},
                }
            ]
        },
    )

    id: str | SkipJsonSchema[None] = Field(None, description="Echoed in the answer")
    inputs: list[InferInput] = Field(
        min_length=len(RAW_COLUMNS) - 1, max_length=len(RAW_COLUMNS), description="Each name once"
    )
    outputs: list[InferRequestedOutput] | SkipJsonSchema[None] = Field(
        None,
        description="The outputs to answer, in this order; without it, all of them (the "
        "range's only when the answer has one)",
    )
    parameters: InferRequestParameters | SkipJsonSchema[None] = None


class InferOutputParameters(_Closed):
    coverage: float = Field(description="The range's coverage")


class InferOutput(_Closed):
    name: OipOutputName
    datatype: Literal["FP64"]
    shape: list[int]
    data: list[float] = Field(description="US dollars, in row order")
    parameters: InferOutputParameters | SkipJsonSchema[None] = Field(
        None, description="house_value_low and house_value_high only"
    )


def _output(name: str, value: float, coverage: float | None = None) -> dict[str, Any]:
    tensor = {"name": name, "datatype": "FP64", "shape": [1], "data": [value]}
    return tensor if coverage is None else {**tensor, "parameters": {"coverage": coverage}}


class InferResponseParameters(_Closed):
    warning_count: int = Field(description="How many warnings the rows have (`app/core/flags.py`)")
    warnings: str = Field(
        description="The first few, `row N field code` separated by `; `, then `and N more`"
    )


class InferResponse(_Closed):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_name": "housing",
                    "model_version": "3f2c9a1b7d4e",
                    "id": "r-1",
                    "outputs": [
                        _output("house_value", 429055.59),
                        _output("house_value_low", 354105.01, 0.9),
                        _output("house_value_high", 504006.17, 0.9),
                    ],
                }
            ]
        },
    )

    model_name: str
    model_version: str
    id: str | SkipJsonSchema[None] = None
    outputs: list[InferOutput]
    parameters: InferResponseParameters | SkipJsonSchema[None] = Field(
        None, description="Present only when some row is flagged (`app/core/flags.py`)"
    )
