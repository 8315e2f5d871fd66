"""Request and response bodies, built from the feature definitions in ``modelspec``.

A request is parsed and validated in one pass from the raw body bytes by pydantic-core, into
plain dicts (TypedDicts: about half the cost of model instances), in strict mode: numbers must
be JSON numbers (no "1.5" strings, no booleans), finite (no NaN, Infinity or 1e400) and within
the physical bounds of ``NUMERIC_FIELDS``; no unknown fields; a known ``ocean_proximity``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from modelspec.features import (
    BEDROOMS_ABOVE_ROOMS,
    CATEGORICAL_COLUMN,
    EXAMPLE_RECORD,
    IMPUTED_COLUMN,
    NUMERIC_FIELDS,
    OCEAN_CATEGORIES,
    RAW_COLUMNS,
    OceanProximity,
    RawField,
)
from modelspec.intervals import COVERAGES


def _strict(**extra: Any) -> ConfigDict:
    config: dict[str, Any] = {"extra": "forbid", "strict": True, "allow_inf_nan": False, **extra}
    return ConfigDict(**config)  # type: ignore[typeddict-item]


# Typed as Any: mypy cannot follow a TypedDict whose fields come from data (modelspec).
_typed_dict: Any = TypedDict


def _numeric(f: RawField) -> Any:
    bounds = Field(description=f.description, examples=[f.example], ge=f.ge, gt=f.gt, le=f.le)
    if f.optional:
        return NotRequired[Annotated[float | None, bounds]]
    return Annotated[float, bounds]


def _house_type() -> Any:
    fields: dict[str, Any] = {f.name: _numeric(f) for f in NUMERIC_FIELDS}
    fields[CATEGORICAL_COLUMN] = Annotated[
        OceanProximity,
        Field(description=f"Rough location, one of {', '.join(OCEAN_CATEGORIES)}"),
    ]
    house: Any = _typed_dict("House", fields)
    house.__doc__ = "The raw features of one census block group (one row of housing.csv)."
    house.__pydantic_config__ = _strict(json_schema_extra={"examples": [EXAMPLE_RECORD]})
    return house


def _consistent(record: Any) -> Any:
    """The rule across fields (``modelspec.features.BEDROOMS_ABOVE_ROOMS``); its error names
    ``total_bedrooms`` (``app.errors.field_path``)."""
    bedrooms = record.get(IMPUTED_COLUMN)
    if bedrooms is not None and bedrooms > record["total_rooms"]:
        raise PydanticCustomError(
            BEDROOMS_ABOVE_ROOMS,
            f"{IMPUTED_COLUMN} is more than total_rooms: bedrooms are counted among the "
            "rooms. Hint: check the order of the columns",
        )
    return record


# Typed as Any: mypy cannot follow a type built from data (modelspec).
House: Any = Annotated[_house_type(), AfterValidator(_consistent)]


class InputWarning(BaseModel):
    """A row outside what training covered; the prediction is made all the same."""

    row: int = Field(description="Index of the record (0 for a single record)")
    field: str = Field(description="A numeric input, `location` or `house_value`")
    code: Literal["out_of_range", "outside_california", "above_cap", "below_floor"] = Field(
        description="`out_of_range`: below the 0.5th or above the 99.5th percentile of the "
        "training data; `outside_california`: latitude/longitude outside the state; "
        "`above_cap`: a prediction above $500,001, where the data set was capped; "
        "`below_floor`: the model's value was at or below $14,999, the data set's floor, and "
        "the price is that floor (never less)"
    )
    message: str


_WARNINGS = Field(
    None, description="Present only when some row is flagged (`app/core/flags.py`); never blocks"
)


class PriceRange(BaseModel):
    """A calibrated range: the true value lies inside at least ``coverage`` of the time
    (split conformal, measured on held-out data: see the README)."""

    low: float = Field(description="Lower bound, US dollars (never below 0)")
    high: float = Field(description="Upper bound, US dollars")
    coverage: float = Field(description="The coverage asked for (`?coverage=`, or the default)")


_INTERVAL = Field(
    None,
    description="The price's range at the request's coverage; absent with `?coverage=0` or "
    "for a model trained before intervals",
)


class HouseValue(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "house_value": 429055.59,
                    "interval": {"low": 354105.01, "high": 504006.17, "coverage": 0.9},
                }
            ]
        }
    )

    house_value: float = Field(description="Predicted median house value, US dollars")
    interval: PriceRange | SkipJsonSchema[None] = _INTERVAL
    warnings: list[InputWarning] | SkipJsonSchema[None] = _WARNINGS


class Predictions(BaseModel):
    predictions: list[float] = Field(description="House values in dollars, in request order")
    intervals: list[PriceRange] | SkipJsonSchema[None] = Field(
        None, description="Each prediction's range, in the same order (as `interval`)"
    )
    warnings: list[InputWarning] | SkipJsonSchema[None] = _WARNINGS


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "batch" if "instances" in value else "record"
    return None


RequestAdapter = TypeAdapter[Any]


@lru_cache(maxsize=8)
def request_adapter(max_instances: int) -> RequestAdapter:
    """The validator of ``POST /predict`` bodies: one record, or ``{"instances": [...]}``."""
    return TypeAdapter(request_type(max_instances))


@lru_cache(maxsize=1)
def record_adapter() -> RequestAdapter:
    """The validator of one record alone: the record branch of ``request_adapter``'s union."""
    return TypeAdapter(House)


@lru_cache(maxsize=8)
def request_type(max_instances: int) -> Any:
    """The type of ``POST /predict`` bodies, which ``request_adapter`` validates and the
    OpenAPI schema documents."""
    records: Any = list[House]
    instances: Any = _typed_dict(
        "Instances",
        {"instances": Annotated[records, Field(min_length=1, max_length=max_instances)]},
    )
    instances.__doc__ = f"Up to {max_instances} records, answered in order."
    instances.__pydantic_config__ = _strict()
    body = Annotated[
        Annotated[House, Tag("record")] | Annotated[instances, Tag("batch")],
        Discriminator(
            _body_kind,
            custom_error_type="invalid_body",
            custom_error_message='the body must be a JSON object: one record, or {"instances": '
            "[record, ...]}",
        ),
    ]
    return body


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
