"""The Amazon SageMaker container contract: ``GET /ping`` and ``POST /invocations``.

``/invocations`` takes the same JSON as ``/predict`` or ``text/csv`` rows
(``app.protocols.tabular``). The answer's format follows ``Accept``, else the request's own
format: ``application/json`` is ``/predict``'s answer, ranges and all; ``text/csv`` is one value
per line, and ``text/csv;columns=3`` is ``value,low,high`` per line (406 when the answer has
no range, or for another ``columns``). The range's coverage is the query's ``coverage``, else
``coverage=`` in SageMaker's custom attributes header (``InvokeEndpoint`` passes no query),
else ``HOUSING_INTERVAL_COVERAGE``. SageMaker's other rules (port 8080, ``serve``,
``/opt/ml/model``) live in ``app.__main__.serve``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header

from app.api.documentation import documented_post, refusals
from app.api.endpoint import JSON, Answer, Decoded, PredictionEndpoint
from app.api.guard import Guard, Headers, media_type
from app.api.health import read_readiness
from app.api.predict import COVERAGE_QUERY, EXAMPLES, RecordsJson, invalid_body
from app.errors import RequestRefused
from app.flags import Flag
from app.intervals import Coverage, Ranges
from app.observe.access import RequestRecorder
from app.protocols.tabular import parse_csv
from app.runtime import ModelRuntime
from app.schemas import ErrorMessage, HouseValue, InternalError, Predictions, Readiness
from app.served import Served
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS, encode_records

CSV = "text/csv"
CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
RANGE_COLUMNS = 3  # value,low,high

router = APIRouter(tags=["sagemaker"])


# SageMaker's health check is readiness: the same handler as /health/ready.
router.get(
    "/ping",
    summary="SageMaker health check: 200 once the model can predict",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: loading, or shutting down"}},
)(read_readiness)


@dataclass(slots=True)
class Invocation:
    """What an ``/invocations`` answer follows: whether the request's JSON was a single
    record, and the answer's media type with, for CSV, its columns (1, or 3 with the range)."""

    single: bool
    answer: str
    columns: int


def answer_format(accept: bytes | None, kind: str) -> tuple[str, int]:
    """The answer's media type and CSV columns, from ``Accept`` (else the request's ``kind``).
    RequestRefused (406) for ``text/csv`` with a ``columns`` other than 1 or 3."""
    text = "" if accept is None else accept.decode("latin-1").lower()
    if CSV in text:
        return CSV, _csv_columns(text) if "columns" in text else 1
    if JSON in text:
        return JSON, 0
    return kind, 1 if kind == CSV else 0


def _csv_columns(accept: str) -> int:
    for media_range in accept.split(","):
        kind, *parameters = media_range.split(";")
        if kind.strip() != CSV:
            continue
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() != "columns":
                continue
            columns = value.strip().strip('"')
            if columns not in ("1", "3"):
                raise RequestRefused(
                    406,
                    f"Accept {CSV};columns={columns} cannot be answered: columns is 1 "
                    "(the value) or 3 (value,low,high)",
                )
            return int(columns)
    return 1


def custom_attribute(attributes: bytes, key: str) -> str | None:
    """``key``'s value in SageMaker's custom attributes (``key=value`` pairs, separated by
    ``;`` or ``,``; an opaque string to SageMaker), or None."""
    for pair in re.split(r"[;,]", attributes.decode("latin-1")):
        name, equals, value = pair.partition("=")
        if equals and name.strip() == key:
            return value.strip()
    return None


class InvocationsEndpoint(PredictionEndpoint[Invocation]):
    """``POST /invocations``: ``/predict``'s JSON, or CSV rows."""

    route = "/invocations"
    media_types = frozenset({JSON, CSV, ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(runtime, guard, recorder)
        self.json = RecordsJson(runtime.settings.max_instances)

    def asked_coverage(self, model: Served, query: bytes, headers: Headers) -> Coverage | None:
        attributes = headers.get(CUSTOM_ATTRIBUTES)
        if attributes is not None and b"coverage" in attributes and b"coverage" not in query:
            text = custom_attribute(attributes, "coverage")
            if text is not None:
                return model.intervals.parse(text, "X-Amzn-SageMaker-Custom-Attributes.coverage")
        return model.intervals.choose(query)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[Invocation]:
        kind = media_type(headers.get(b"content-type")) or JSON
        answer, columns = answer_format(headers.get(b"accept"), kind)
        median = model.bedrooms_median
        if kind != CSV:
            decoded = self.json.decode(body, median)
            return Decoded(decoded.encoded, Invocation(decoded.context, answer, columns))
        records = parse_csv(body, self.json.adapter)
        return Decoded(encode_records(records, median), Invocation(False, answer, columns))

    def coverage_for(
        self, model: Served, decoded: Decoded[Invocation], asked: Coverage | None
    ) -> Coverage | None:
        """None for one value per line (no range to compute); a 406 for three columns
        without a range."""
        columns = decoded.context.columns
        if columns == 1:
            return None
        if columns == RANGE_COLUMNS and asked is None:
            why = (
                "this model has no calibrated intervals (trained before them)"
                if model.intervals.table is None
                else "the coverage asked for is 0 (?coverage=, the custom attributes, or "
                "HOUSING_INTERVAL_COVERAGE)"
            )
            raise RequestRefused(406, f"Accept {CSV};columns=3 needs a price range, and {why}")
        return asked

    def reply(
        self,
        model: Served,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[Invocation],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        context = decoded.context
        if context.answer != CSV:
            return self.json.reply(values, ranges, context.single, flags)
        if ranges is None:
            return Answer("".join(f"{v}\n" for v in values).encode(), CSV)
        lines = "".join(
            f"{v},{lo},{hi}\n" for v, (lo, hi) in zip(values, ranges.bounds, strict=True)
        )
        # The body cannot say the coverage; SageMaker passes this header back to the caller.
        said = (("X-Amzn-SageMaker-Custom-Attributes", f"coverage={ranges.coverage:g}"),)
        return Answer(lines.encode(), CSV, headers=said)


def document(router: APIRouter, body: Any) -> None:
    """``POST /invocations`` in the schema (``app.api.documentation``): ``/predict``'s JSON,
    plus CSV both ways (``openapi_extra``: the CSV rows are text, parsed by ``parse_csv``)."""
    example_row = ",".join(str(EXAMPLE_RECORD[c]) for c in RAW_COLUMNS)
    rows = f"Rows of {','.join(RAW_COLUMNS)}; a header line may come first"
    attributes = Header(
        alias="X-Amzn-SageMaker-Custom-Attributes",
        description="`coverage=0.8`: the range's coverage when the query has none (SageMaker's "
        "InvokeEndpoint passes this header, not a query); other attributes are ignored",
        examples=["coverage=0.8"],
    )
    documented_post(
        router,
        InvocationsEndpoint.route,
        "sagemaker_invocations",
        {
            "body": Annotated[body, Body(openapi_examples=EXAMPLES)],
            "coverage": COVERAGE_QUERY,
            "custom_attributes": (Annotated[str | None, attributes], None),
        },
        tags=["sagemaker"],
        summary="SageMaker inference: /predict's JSON, or CSV rows",
        description="The Amazon SageMaker container's inference route. The answer's format "
        "follows Accept, else the request's: `application/json` is /predict's answer; "
        "`text/csv` one value per line; `text/csv;columns=3` `value,low,high` per line.",
        response_model=HouseValue | Predictions,
        response_description="Values in dollars, in the format of Accept, else of the request",
        responses={
            200: {
                "content": {
                    CSV: {
                        "schema": {
                            "type": "string",
                            "description": "One value per line; with Accept "
                            "`text/csv;columns=3`, `value,low,high` per line",
                        },
                        "example": "429055.59,354105.01,504006.17\n",
                    }
                }
            },
            406: {
                "model": ErrorMessage,
                "description": "Accept `text/csv;columns=3` without a range (coverage 0, or a "
                "model without intervals), or another `columns`",
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
