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
    OceanProximity,
    RawField,
)


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
    (split conformal, measured on held-out data: see docs/model-card.md)."""

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
