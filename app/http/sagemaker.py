"""The Amazon SageMaker container contract: ``GET /ping`` and ``POST /invocations``.

``/invocations`` takes the same JSON as ``/predict``, or one record a line: ``text/csv`` rows
or JSON Lines (``application/jsonlines``; ``app.codecs.tabular``), the bodies SageMaker
Batch Transform sends with ``SplitType=Line``. The answer's format is the first of ``Accept``'s
media ranges (by ``q``, then order) that the route can produce, ``*/*`` or none meaning the
request's own format; an ``Accept`` it cannot produce is a 406, never another format:

* ``application/json``: ``/predict``'s answer, ranges and all;
* ``text/csv``: one value a line, and ``text/csv;columns=3`` ``value,low,high`` a line (406
  when the answer has no range, or for another ``columns``);
* ``application/jsonlines``: one JSON object a line, ``/predict``'s answer for that record.

The line formats answer one line per record, in order (what ``AssembleWith=Line`` joins).
A CSV body that is its header line alone (a header-only object in a Batch Transform job) has no
records, and is answered 200 with none, in the answer's format: an empty body for CSV and JSON
Lines, ``{"predictions": []}`` (and ``"intervals": []`` when the answer has ranges) for JSON;
the device is not called. So the object's ``.out`` file is empty, as its input was, where a 4xx
would count as a failed object (Batch Transform's ``ClientError``). SageMaker's containers do
not refuse an empty input either: the built-in XGBoost container answers an empty body with
204 and no content (its CSV reader takes no header line at all). An empty body (no header
either) is still a 422 here: it says nothing of its format.
Their rows are bounded by ``HOUSING_MAX_BODY_BYTES`` alone, not ``HOUSING_MAX_INSTANCES``
(which bounds JSON's ``instances``); such a request enters the queue ``HOUSING_MAX_INSTANCES``
rows at a time (``PredictionEndpoint.answer``), and a large body is parsed on a worker thread.
The range's coverage is the query's ``coverage``, else ``coverage=`` in SageMaker's custom
attributes header (``InvokeEndpoint`` passes no query), else ``HOUSING_INTERVAL_COVERAGE``.
SageMaker's other rules (port 8080, ``serve``, ``/opt/ml/model``, ``MaxPayloadInMB``) live in
``app.process.cli.serve``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, Header
from pydantic import BaseModel, Field

from app.codecs.oip import flag_summary
from app.codecs.schemas import HouseValue, Predictions, request_adapter
from app.codecs.tabular import SLICE_ROWS, parse_csv, parse_jsonlines
from app.core.flags import Flag
from app.core.inference import Decoded, InferencePath
from app.core.intervals import Coverage, Ranges
from app.core.served import Served
from app.errors import Refusal, RequestRefused
from app.http.bodies import ErrorMessage, InternalError, Readiness
from app.http.deps import RuntimeDep
from app.http.endpoint import JSON, Answer, PredictionEndpoint
from app.http.guard import Guard, Headers, media_type
from app.http.health import read_readiness
from app.http.openapi import documented_post, refusals
from app.http.predict import COVERAGE_QUERY, EXAMPLES, RecordsJson, invalid_body
from app.observe.access import RequestRecorder
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS, encode_records

CSV = "text/csv"
JSONLINES = "application/jsonlines"
# JSON Lines goes by several names; all are read, and answered as JSONLINES.
JSONLINES_NAMES = frozenset({JSONLINES, "application/jsonl", "application/x-jsonlines"})
PRODUCED = f"{JSON}, {CSV} (columns=1 or 3), {JSONLINES}"
CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
RANGE_COLUMNS = 3  # value,low,high
# Bodies larger than this (about 1,000 CSV rows) are parsed on a worker thread, so a large
# body's parse does not hold the event loop.
OFFLOAD_BYTES = 64 * 1024

router = APIRouter(tags=["sagemaker"])


# SageMaker's health check is readiness: the same handler as /health/ready.
router.get(
    "/ping",
    summary="SageMaker health check: 200 once the model can predict",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: loading, or shutting down"}},
)(read_readiness)


class ExecutionParameters(BaseModel):
    """What a Batch Transform job uses when it does not set them itself."""

    MaxConcurrentTransforms: int = Field(
        description="Requests in flight per instance: two per server process, so one "
        "mini-batch is parsed while another runs on the device"
    )
    BatchStrategy: str = Field(description="MULTI_RECORD: as many lines as MaxPayloadInMB holds")
    MaxPayloadInMB: int = Field(description="HOUSING_MAX_BODY_BYTES, in MiB")


@router.get(
    "/execution-parameters",
    summary="SageMaker Batch Transform's defaults for this container",
    response_model=ExecutionParameters,
)
async def execution_parameters(runtime: RuntimeDep) -> ExecutionParameters:
    """Batch Transform asks for these when the job leaves ``MaxConcurrentTransforms`` unset."""
    settings = runtime.settings
    return ExecutionParameters(
        MaxConcurrentTransforms=2 * (settings.workers or 1),
        BatchStrategy="MULTI_RECORD",
        MaxPayloadInMB=max(1, settings.max_body_bytes >> 20),
    )


@dataclass(slots=True)
class Invocation:
    """What an ``/invocations`` answer follows: whether the request's JSON was a single
    record, and the answer's media type with, for CSV, its columns (1, or 3 with the range)."""

    single: bool
    answer: str
    columns: int


def answer_format(accept: bytes | None, kind: str) -> tuple[str, int]:
    """The answer's media type and CSV columns (1, or 3 with the range; 0 for JSON formats):
    the first of ``Accept``'s media ranges, by ``q`` then order, that can be produced;
    ``*/*`` (or no ``Accept``) is the request's own ``kind``. RequestRefused (406) when none
    can, or for ``text/csv`` with a ``columns`` other than 1 or 3."""
    text = "" if accept is None else accept.decode("latin-1").lower().strip()
    if not text:
        return kind, 1 if kind == CSV else 0
    ranked: list[tuple[float, int, str, str | None]] = []
    for order, media_range in enumerate(text.split(",")):
        name, *parameters = media_range.split(";")
        q, columns = 1.0, None
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key == "columns":
                columns = value
        if q > 0:
            ranked.append((-q, order, name.strip(), columns))
    for _, _, name, columns in sorted(ranked):
        media = _producible(name, kind)
        if media == CSV:
            return CSV, _csv_columns(columns)
        if media is not None:
            return media, 0
    raise RequestRefused(
        Refusal.NOT_ACCEPTABLE,
        f"Accept {text[:100]!r} names no format this route answers in: {PRODUCED}",
    )


def _producible(name: str, kind: str) -> str | None:
    if name in ("*/*", "*"):
        return kind
    if name == "application/*":
        return kind if kind != CSV else JSON
    if name == "text/*":
        return CSV
    if name in JSONLINES_NAMES:
        return JSONLINES
    return name if name in (JSON, CSV) else None


def _csv_columns(columns: str | None) -> int:
    if columns is None or columns == "1":
        return 1
    if columns == "3":
        return RANGE_COLUMNS
    raise RequestRefused(
        Refusal.NOT_ACCEPTABLE,
        f"Accept {CSV};columns={columns} cannot be answered: columns is 1 "
        "(the value) or 3 (value,low,high)",
    )


def custom_attribute(attributes: bytes, key: str) -> str | None:
    """``key``'s value in SageMaker's custom attributes (``key=value`` pairs, separated by
    ``;`` or ``,``; an opaque string to SageMaker), or None."""
    for pair in re.split(r"[;,]", attributes.decode("latin-1")):
        name, equals, value = pair.partition("=")
        if equals and name.strip() == key:
            return value.strip()
    return None


class InvocationsEndpoint(PredictionEndpoint[Invocation]):
    """``POST /invocations``: ``/predict``'s JSON, CSV rows or JSON Lines."""

    route = "/invocations"
    media_types = frozenset({JSON, CSV, *JSONLINES_NAMES, ""})
    offload_bytes = OFFLOAD_BYTES

    def __init__(self, plane: InferencePath, guard: Guard, recorder: RequestRecorder) -> None:
        super().__init__(plane, guard, recorder)
        self.json = RecordsJson(plane.runtime.settings.max_instances)
        # The line formats are validated SLICE_ROWS at a time; HOUSING_MAX_BODY_BYTES bounds
        # their rows.
        self.lines = request_adapter(SLICE_ROWS)

    def asked_coverage(self, model: Served, query: bytes, headers: Headers) -> Coverage | None:
        attributes = headers.get(CUSTOM_ATTRIBUTES)
        if attributes is not None and b"coverage" in attributes and b"coverage" not in query:
            text = custom_attribute(attributes, "coverage")
            if text is not None:
                return model.intervals.parse(text, "X-Amzn-SageMaker-Custom-Attributes.coverage")
        return model.intervals.choose(query)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[Invocation]:
        kind = media_type(headers.get(b"content-type")) or JSON
        kind = JSONLINES if kind in JSONLINES_NAMES else kind
        answer, columns = answer_format(headers.get(b"accept"), kind)
        median = model.bedrooms_median
        if kind == CSV:
            records = parse_csv(body, self.lines, self.max_errors)  # none: the header alone
        elif kind == JSONLINES:
            records = parse_jsonlines(body, self.lines, self.max_errors)
        else:
            decoded = self.json.decode(body, median)
            return Decoded(decoded.encoded, Invocation(decoded.context, answer, columns))
        # In slices, as parsed (app.codecs.tabular); a header alone is no rows, (0, 13).
        encoded = np.concatenate(
            [
                encode_records(records[i : i + SLICE_ROWS], median)
                for i in range(0, max(len(records), 1), SLICE_ROWS)
            ]
        )
        return Decoded(encoded, Invocation(False, answer, columns))

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
            raise RequestRefused(
                Refusal.NOT_ACCEPTABLE, f"Accept {CSV};columns=3 needs a price range, and {why}"
            )
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
        if context.answer == JSONLINES:
            return json_lines(values, ranges, flags)
        if context.answer != CSV:
            return self.json.reply(values, ranges, context.single, flags)
        if ranges is None:
            lines = "".join(f"{v}\n" for v in values)
        else:
            lines = "".join(
                f"{v},{lo},{hi}\n" for v, (lo, hi) in zip(values, ranges.bounds, strict=True)
            )
        return Answer(lines.encode(), CSV, headers=csv_headers(ranges, flags))


def csv_headers(ranges: Ranges | None, flags: list[Flag]) -> tuple[tuple[str, str], ...]:
    """What a CSV body cannot say, in headers: the range's coverage and the rows' warnings.
    SageMaker passes only ``X-Amzn-SageMaker-Custom-Attributes`` back to the caller, so both
    are there (``coverage=0.9,warnings=2``); ``X-Housing-Warnings`` names the first few
    (``app.codecs.oip.flag_summary``)."""
    attributes = []
    if ranges is not None:
        attributes.append(f"coverage={ranges.coverage:g}")
    if flags:
        attributes.append(f"warnings={len(flags)}")
    said = [("X-Amzn-SageMaker-Custom-Attributes", ",".join(attributes))] if attributes else []
    if flags:
        said.append(("X-Housing-Warnings", flag_summary(flags)))
    return tuple(said)


def json_lines(values: list[float], ranges: Ranges | None, flags: list[Flag]) -> Answer:
    """One JSON object a row, in order: ``/predict``'s answer for that row alone."""
    notes: dict[int, list[dict[str, str]]] = {}
    for flag in flags:
        notes.setdefault(flag["row"], []).append(
            {"field": flag["field"], "code": flag["code"], "message": flag["message"]}
        )
    lines = []
    for row, value in enumerate(values):
        answer: dict[str, Any] = {"house_value": value}
        if ranges is not None:
            low, high = ranges.bounds[row]
            answer["interval"] = {"low": low, "high": high, "coverage": ranges.coverage}
        if row in notes:
            answer["warnings"] = notes[row]
        lines.append(orjson.dumps(answer))
    return Answer(b"".join(line + b"\n" for line in lines), JSONLINES)


def document(router: APIRouter, body: Any) -> None:
    """``POST /invocations`` in the schema (``app.http.openapi``): ``/predict``'s JSON,
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
