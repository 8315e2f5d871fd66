"""``POST /predict``: house values in dollars for one record or a batch of records.

This is the hot path, so it is a bare ASGI endpoint rather than a FastAPI route: routing,
dependency injection and Request/Response objects cost several times what parsing, validating
and running the model do (see docs/performance.md). It reads the body, checks it (the fast
accept-only check of ``app.codecs.fastparse``, else the pydantic validator, which explains
errors), queues the rows for the batcher, and writes the answer with orjson. ``document``
declares its OpenAPI to FastAPI from the same types.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query
from fastapi.openapi.models import Example
from pydantic import ValidationError

from app.codecs.fastparse import accept
from app.codecs.schemas import HouseValue, Predictions, record_adapter, request_adapter
from app.core.flags import Flag
from app.core.inference import Decoded, InferencePath
from app.core.intervals import Ranges
from app.core.served import Served
from app.http.bodies import ErrorMessage, InternalError, ValidationErrors
from app.http.endpoint import Answer, PredictionEndpoint
from app.http.guard import Guard, Headers
from app.http.openapi import documented_post, refusals
from app.observe.access import RequestRecorder
from modelspec.features import EXAMPLE_RECORD, IMPUTED_COLUMN, encode, encode_records
from modelspec.intervals import COVERAGES

# Bodies from this size (about 8 records) take the fast check first. Its numpy work has a
# fixed cost that outweighs pydantic's per-record cost on small bodies: with the check on
# every body, single records would pay it on every request.
FAST_CHECK_BYTES = 2048


class RecordsJson:
    """``/predict``'s JSON both ways: one record or ``{"instances": [...]}`` in, ``house_value``
    or ``predictions`` (and ``interval`` or ``intervals``, and ``warnings``) out.
    ``/invocations`` speaks it too."""

    def __init__(self, max_instances: int) -> None:
        self.max_instances = max_instances
        self.adapter = request_adapter(max_instances)
        self.record = record_adapter()

    def decode(self, body: bytes, bedrooms_median: float) -> Decoded[bool]:
        """Large bodies take the fast accept-only check first, and a body that cannot name
        ``instances`` is first tried as one record (the body validator's union and its
        discriminator cost half as much again); the body validator decides, and explains,
        whatever these do not accept. The context is whether the body was a single record."""
        fast = accept(body, self.max_instances) if len(body) >= FAST_CHECK_BYTES else None
        if fast is not None:
            return Decoded(encode(fast.numeric, fast.ocean, bedrooms_median), fast.single)
        if b'"instances"' not in body:
            try:
                record = self.record.validate_json(body)
            except ValidationError:
                pass  # not one valid record: the body validator below answers
            else:
                return Decoded(encode_records((record,), bedrooms_median, validated=True), True)
        parsed = self.adapter.validate_json(body)
        single = "instances" not in parsed
        records = (parsed,) if single else parsed["instances"]
        return Decoded(encode_records(records, bedrooms_median, validated=True), single)

    @staticmethod
    def reply(
        values: list[float], ranges: Ranges | None, single: bool, flags: list[Flag]
    ) -> Answer:
        body: dict[str, Any] = {"house_value": values[0]} if single else {"predictions": values}
        if ranges is not None:
            c = ranges.coverage
            if single:
                low, high = ranges.bounds[0]
                body["interval"] = {"low": low, "high": high, "coverage": c}
            else:
                body["intervals"] = [
                    {"low": lo, "high": hi, "coverage": c} for lo, hi in ranges.bounds
                ]
        if flags:
            body["warnings"] = flags
        return Answer(orjson.dumps(body))


class PredictEndpoint(PredictionEndpoint[bool]):
    """``POST /predict``: one record, or ``{"instances": [...]}``."""

    route = "/predict"

    def __init__(self, plane: InferencePath, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(plane, guard, recorder)
        self.json = RecordsJson(plane.runtime.settings.max_instances)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[bool]:
        return self.json.decode(body, model.bedrooms_median)

    def reply(
        self,
        model: Served,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[bool],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        return self.json.reply(values, ranges, decoded.context, flags)


# The second record leaves total_bedrooms out: it is imputed (null does the same).
_SECOND = {k: v for k, v in EXAMPLE_RECORD.items() if k != IMPUTED_COLUMN} | {"median_income": 3.5}
EXAMPLES: dict[str, Example] = {
    "one record": {"value": EXAMPLE_RECORD},
    "instances": {"value": {"instances": [EXAMPLE_RECORD, _SECOND]}},
}


def document(router: APIRouter, body: Any) -> None:
    """``POST /predict`` in the schema (``app.http.openapi``); ``body`` is the request
    type that ``request_adapter`` validates with."""
    documented_post(
        router,
        PredictEndpoint.route,
        "predict_house_values",
        {"body": Annotated[body, Body(openapi_examples=EXAMPLES)], "coverage": COVERAGE_QUERY},
        tags=["predict"],
        summary="Predict house values",
        description="Median house value in US dollars for each census block group in the body: "
        'one record, or `{"instances": [...]}` answered in order; each with its calibrated '
        "range (`interval`, or `intervals` in order) at the coverage asked for.",
        response_model=HouseValue | Predictions,
        response_description="One value for one record, a list in order for instances",
        responses={422: invalid_body(), **refusals(ErrorMessage, InternalError)},
    )


# The query parameter that chooses the intervals (``app.core.intervals``), for the schema.
COVERAGE_QUERY = (
    Annotated[
        float | None,
        Query(
            description="Coverage of each price's range: one of the model's calibrated "
            "coverages (GET /v1/models/housing lists them; 0.5 to 0.99), or 0 for no range. "
            "Default: HOUSING_INTERVAL_COVERAGE (0.9). Any other value is a 422.",
            examples=[0.8],
            # The table training writes; a manifest's own is in GET /v1/models/housing.
            json_schema_extra={"enum": [0, *COVERAGES]},
        ),
    ],
    None,
)


def invalid_body(note: str = "") -> dict[str, Any]:
    """The 422 answer of /predict's checks (``note``: what a route adds to its description)."""
    return {
        "model": ValidationErrors,
        "description": f"Invalid body: each error names the field and the reason{note}",
    }
