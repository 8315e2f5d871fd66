"""Request and response bodies, built from the feature definitions in ``modelspec``.

The request is parsed and validated in one pass from the raw body bytes (pydantic-core's JSON
parser), in strict mode: numbers must be JSON numbers (no "1.5" strings, no booleans), finite
(no NaN, Infinity or 1e400), within the physical bounds of ``NUMERIC_FIELDS``; no unknown
fields; a known ``ocean_proximity``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    create_model,
)

from modelspec.features import (
    CATEGORICAL_COLUMN,
    EXAMPLE_RECORD,
    NUMERIC_FIELDS,
    OCEAN_CATEGORIES,
    OceanProximity,
    RawField,
)

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _numeric(f: RawField) -> Any:
    field = Field(
        None if f.optional else ...,
        description=f.description,
        examples=[f.example],
        ge=f.ge,
        gt=f.gt,
        le=f.le,
    )
    return (float | None if f.optional else float, field)


_HOUSE_FIELDS: dict[str, Any] = {f.name: _numeric(f) for f in NUMERIC_FIELDS}
_HOUSE_FIELDS[CATEGORICAL_COLUMN] = (
    OceanProximity,
    Field(..., description=f"Rough location, one of {', '.join(OCEAN_CATEGORIES)}"),
)
_EXAMPLES: Any = {"examples": [EXAMPLE_RECORD]}
House: type[BaseModel] = create_model(
    "House",
    __config__=ConfigDict(**_STRICT, json_schema_extra=_EXAMPLES),
    __doc__="The raw features of one census block group (one row of housing.csv).",
    **_HOUSE_FIELDS,
)


class HouseValue(BaseModel):
    house_value: float = Field(description="Predicted median house value, US dollars")


class Predictions(BaseModel):
    predictions: list[float] = Field(description="House values in dollars, in request order")


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "batch" if "instances" in value else "record"
    return None


@lru_cache(maxsize=8)
def request_adapter(max_instances: int) -> TypeAdapter[Any]:
    """The validator of ``POST /predict`` bodies: one record, or ``{"instances": [...]}``."""
    batch = create_model(
        "Instances",
        __config__=_STRICT,
        __doc__=f"Up to {max_instances} records, answered in order.",
        instances=(list[House], Field(..., min_length=1, max_length=max_instances)),
    )
    body = Annotated[
        Annotated[House, Tag("record")] | Annotated[batch, Tag("batch")],
        Discriminator(
            _body_kind,
            custom_error_type="invalid_body",
            custom_error_message='the body must be a JSON object: one record, or {"instances": '
            "[record, ...]}",
        ),
    ]
    return TypeAdapter(body)
