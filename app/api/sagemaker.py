"""The Amazon SageMaker container contract: ``GET /ping`` and ``POST /invocations``.

``/invocations`` takes the same JSON as ``/predict`` or ``text/csv`` rows
(``app.protocols.tabular``). The answer's format follows ``Accept`` (``text/csv``: one value
per line; ``application/json``), else the request's own format. SageMaker's other rules (port
8080, ``serve``, ``/opt/ml/model``) live in ``app.__main__.serve``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body

from app.api.documentation import documented_post, refusals
from app.api.endpoint import JSON, Answer, Decoded, PredictionEndpoint
from app.api.guard import Guard, Headers, media_type
from app.api.health import read_readiness
from app.api.predict import COVERAGE_QUERY, EXAMPLES, RecordsJson, invalid_body
from app.flags import Flag
from app.intervals import Ranges
from app.observe.access import RequestRecorder
from app.protocols.tabular import parse_csv
from app.runtime import ModelRuntime
from app.schemas import ErrorMessage, HouseValue, InternalError, Predictions, Readiness
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS, encode_records

CSV = "text/csv"

router = APIRouter(tags=["sagemaker"])


# SageMaker's health check is readiness: the same handler as /health/ready.
router.get(
    "/ping",
    summary="SageMaker health check: 200 once the model can predict",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: loading, or shutting down"}},
)(read_readiness)


@dataclass(frozen=True)
class Invocation:
    """What an ``/invocations`` answer follows: the request's media type, and whether its
    JSON was a single record."""

    kind: str
    single: bool


class InvocationsEndpoint(PredictionEndpoint[Invocation]):
    """``POST /invocations``: ``/predict``'s JSON, or CSV rows."""

    route = "/invocations"
    media_types = frozenset({JSON, CSV, ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(runtime, guard, recorder)
        self.json = RecordsJson(runtime.settings.max_instances)

    def decode(self, body: bytes, headers: Headers) -> Decoded[Invocation]:
        kind = media_type(headers.get(b"content-type")) or JSON
        median = self.runtime.bedrooms_median
        if kind != CSV:
            decoded = self.json.decode(body, median)
            return Decoded(decoded.encoded, Invocation(kind, decoded.context))
        records = parse_csv(body, self.json.adapter)
        return Decoded(encode_records(records, median), Invocation(CSV, False))

    def reply(
        self,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[Invocation],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        accept = headers.get(b"accept", b"").decode("latin-1")
        wants = CSV if CSV in accept else JSON if JSON in accept else decoded.context.kind
        if wants == CSV:
            return Answer("".join(f"{v}\n" for v in values).encode(), CSV)
        return self.json.reply(values, ranges, decoded.context.single, flags)


def document(router: APIRouter, body: Any) -> None:
    """``POST /invocations`` in the schema (``app.api.documentation``): ``/predict``'s JSON,
    plus CSV both ways (``openapi_extra``: the CSV rows are text, parsed by ``parse_csv``)."""
    example_row = ",".join(str(EXAMPLE_RECORD[c]) for c in RAW_COLUMNS)
    rows = f"Rows of {','.join(RAW_COLUMNS)}; a header line may come first"
    documented_post(
        router,
        InvocationsEndpoint.route,
        "sagemaker_invocations",
        {"body": Annotated[body, Body(openapi_examples=EXAMPLES)], "coverage": COVERAGE_QUERY},
        tags=["sagemaker"],
        summary="SageMaker inference: /predict's JSON, or CSV rows",
        description="The Amazon SageMaker container's inference route.",
        response_model=HouseValue | Predictions,
        response_description="Values in dollars, in the format of Accept, else of the request",
        responses={
            200: {
                "content": {
                    CSV: {"schema": {"type": "string", "description": "One value per line"}}
                }
            },
            422: invalid_body(" (CSV: `line N.field`)"),
            **refusals(ErrorMessage, InternalError),
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    CSV: {
                        "schema": {"type": "string", "description": rows},
                        "example": f"{example_row}\n",
                    }
                }
            }
        },
    )
