"""Request and response bodies, built from the feature definitions in ``modelspec``.

A request is parsed and validated in one pass from the raw body bytes by pydantic-core, into
plain dicts (TypedDicts: about half the cost of model instances), in strict mode: numbers must
be JSON numbers (no "1.5" strings, no booleans), finite (no NaN, Infinity or 1e400) and within
the physical bounds of ``NUMERIC_FIELDS``; no unknown fields; a known ``ocean_proximity``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from modelspec.features import (
    CATEGORICAL_COLUMN,
    EXAMPLE_RECORD,
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


House = _house_type()


class HouseValue(BaseModel):
    house_value: float = Field(description="Predicted median house value, US dollars")


class Predictions(BaseModel):
    predictions: list[float] = Field(description="House values in dollars, in request order")


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "batch" if "instances" in value else "record"
    return None


RequestAdapter = TypeAdapter[Any]


@lru_cache(maxsize=8)
def request_adapter(max_instances: int) -> RequestAdapter:
    """The validator of ``POST /predict`` bodies: one record, or ``{"instances": [...]}``."""
    records: Any = list[House]  # type: ignore[valid-type]
    instances: Any = _typed_dict(
        "Instances",
        {"instances": Annotated[records, Field(min_length=1, max_length=max_instances)]},
    )
    instances.__doc__ = f"Up to {max_instances} records, answered in order."
    instances.__pydantic_config__ = _strict()
    body = Annotated[
        Annotated[House, Tag("record")] | Annotated[instances, Tag("batch")],  # type: ignore[valid-type]
        Discriminator(
            _body_kind,
            custom_error_type="invalid_body",
            custom_error_message='the body must be a JSON object: one record, or {"instances": '
            "[record, ...]}",
        ),
    ]
    return TypeAdapter(body)
