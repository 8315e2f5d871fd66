"""The base of the bare ASGI prediction endpoints (``/predict``, ``/invocations``, OIP infer).

Prediction routes are the hot path, so they skip FastAPI's routing, dependency injection and
Request/Response objects (several times the cost of the model call: see the README's
benchmark). Every request goes the same way: the guard's checks (``app.api.guard``), the
subclass's ``decode`` into encoded rows and a typed context, the batcher, and the subclass's
``reply`` from the rows' dollars, their intervals at the coverage the request asks for
(``asked_coverage``, ``coverage_for``: ``app.intervals``) and that context; any exception
becomes the subclass's ``refuse`` answer. The request id (``X-Request-ID``, taken or made)
is on every answer and log line, and is the ``error_id`` of a 500.

A request runs entirely on the model in service when it arrives (``runtime.serving()``), even
if a reload swaps in another meanwhile, and its answer names that model (``X-Model-Version``).
Data capture, when on, gets a sampled share of the 200 answers after they are sent
(``app.observe.capture``). Tracing, when on, gives each request a span, its queue wait and
its device call (``app.observe.tracing``); off, it costs one test of ``runtime.tracing``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import orjson
from starlette.types import Message, Receive, Scope, Send

from app.api.guard import Guard, Headers
from app.batching import Batcher, Overloaded, Ticket
from app.errors import ClientDisconnected, error_answer, refusal_reason
from app.flags import Flag
from app.intervals import Coverage, Ranges
from app.observe.access import RequestRecorder
from app.observe.logs import request_id_from
from app.observe.tracing import RequestTrace
from app.runtime import ModelRuntime
from app.served import Served
from app.timeouts import Timeouts

JSON = "application/json"
C = TypeVar("C")


# Plain slotted dataclasses, not frozen ones: a frozen dataclass's __init__ sets each field
# through object.__setattr__, and these are built for every request.
@dataclass(slots=True)
class Answer:
    body: bytes
    content_type: str = JSON
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Decoded(Generic[C]):
    """A checked request: its encoded rows, and what ``reply`` needs to answer in kind."""

    encoded: np.ndarray
    context: C


# A request still waiting after this long starts watching for its client's disconnect. Not
# from the start: a watcher is a task per request, which costs more than the whole answer of
# a request that is served within a batch or two (measured: -30% req/s and a 100 ms p99).
WATCH_AFTER_S = 0.02


class _Watch:
    """``with _Watch(watches, ticket, receive):`` around the wait for a ticket's result: once
    the request has waited ``WATCH_AFTER_S`` (``watches``, one timer for all of a route's
    requests), its client is watched for a disconnect, and if it goes, the ticket is abandoned
    and its rows are dropped unrun. Once the body is read, the next ASGI ``receive()`` only
    returns when the client goes away.
    """

    __slots__ = ("receive", "task", "ticket", "watches")

    def __init__(self, watches: Timeouts[_Watch], ticket: Ticket, receive: Receive) -> None:
        self.watches = watches
        self.ticket = ticket
        self.receive = receive
        self.task: asyncio.Future[Message] | None = None

    def __enter__(self) -> None:
        self.watches.add(self)

    def __exit__(self, *_: object) -> None:
        self.watches.discard(self)
        if self.task is not None:
            self.task.cancel()

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.receive())
        self.task.add_done_callback(self._on_message)

    def _on_message(self, task: asyncio.Future[Message]) -> None:
        ok = not task.cancelled() and task.exception() is None
        if ok and task.result()["type"] == "http.disconnect":
            self.ticket.abandon(ClientDisconnected())


def dollars(values: list[float]) -> list[float]:
    """The values (already to the cent: ``app.runtime``), if every one is finite."""
    if not all(map(math.isfinite, values)):
        raise RuntimeError("the model produced a non-finite value")
    return values


class PredictionEndpoint(Generic[C]):
    """Subclasses set ``route`` and ``media_types`` and write ``decode`` and ``reply`` (and
    ``refuse`` for a protocol with its own error format); ``C`` is their context's type."""

    route = ""
    # Accepted request media types; "" stands for a request without a Content-Type.
    media_types: frozenset[str] = frozenset({JSON, ""})
    # Bodies larger than this are decoded, and their answers written, on a worker thread, so
    # that the event loop serves other requests meanwhile (None: always on the loop; the hot
    # path's bodies are small).
    offload_bytes: int | None = None

    def __init__(self, runtime: ModelRuntime, guard: Guard, recorder: RequestRecorder) -> None:
        self.runtime = runtime
        self.guard = guard
        self.recorder = recorder
        self.max_errors = runtime.settings.max_error_details
        # The most rows a request holds in the queue at a time (``run_in_windows``).
        self.window_rows = runtime.settings.max_instances
        # Body bytes per row of this route's recent requests (a moving average; 0: none yet).
        self.bytes_per_row = 0.0
        self.watches: Timeouts[_Watch] = Timeouts(WATCH_AFTER_S, _Watch.start)

    def decode(self, model: Served, body: bytes, headers: Headers) -> Decoded[C]:
        """Parse and validate the body into encoded rows for ``model`` (raise to refuse it)."""
        raise NotImplementedError

    def asked_coverage(self, model: Served, query: bytes, headers: Headers) -> Coverage | None:
        """The coverage the request's query or headers ask for, before its body is read
        (None: no intervals); the default is the query's ``coverage``."""
        return model.intervals.choose(query)

    def coverage_for(
        self, model: Served, decoded: Decoded[C], asked: Coverage | None
    ) -> Coverage | None:
        """The coverage of the answer's intervals, once the body is decoded (None: none to
        compute); the default is the one asked for. Raise to refuse the request."""
        return asked

    def reply(
        self,
        model: Served,
        values: list[float],
        ranges: Ranges | None,
        decoded: Decoded[C],
        headers: Headers,
        flags: list[Flag],
    ) -> Answer:
        """The answer for the rows' values in dollars, in order, their intervals (None: the
        request asked for none, or the model has none) and their flags (``app.flags``;
        already counted in the metrics)."""
        raise NotImplementedError

    async def answer(
        self,
        model: Served,
        body: bytes,
        headers: Headers,
        receive: Receive,
        asked: Coverage | None,
        trace: RequestTrace | None = None,
    ) -> Answer:
        """The whole request on ``model``: every row of it runs on that model, and every rule
        (imputation, ranges, warnings) is that model's, whatever model is swapped in
        meanwhile."""
        batcher = self.runtime.accepting_batcher()
        offload = self.offload_bytes is not None and len(body) > self.offload_bytes
        if offload:
            decoded = await asyncio.to_thread(self.decode, model, body, headers)
        else:
            with batcher.arrivals:  # while it is parsed, the batcher may wait for its rows
                decoded = self.decode(model, body, headers)
        rows = decoded.encoded.shape[0]
        if rows:
            seen = len(body) / rows
            self.bytes_per_row += (seen - self.bytes_per_row) * (0.1 if self.bytes_per_row else 1)
        coverage = self.coverage_for(model, decoded, asked)
        if rows > self.window_rows:
            values, ticket = await self.run_in_windows(batcher, model, decoded, receive, trace)
        else:
            ticket = self.submit(batcher, model, decoded, trace)
            with _Watch(self.watches, ticket, receive):
                values = dollars(await ticket.result())
        ranges, flags = self.finish(model, decoded, coverage, ticket, values, trace)
        if offload:  # its answer is as large: written on the thread too
            return await asyncio.to_thread(
                self.reply, model, values, ranges, decoded, headers, flags
            )
        return self.reply(model, values, ranges, decoded, headers, flags)

    async def run_in_windows(
        self,
        batcher: Batcher[Served],
        model: Served,
        decoded: Decoded[C],
        receive: Receive,
        trace: RequestTrace | None,
    ) -> tuple[list[float], Ticket]:
        """Run more rows than ``HOUSING_MAX_INSTANCES`` (only the line formats of
        ``/invocations`` have them) that many at a time, each window queued once the last has
        run, so one large request never holds more of the queue than a JSON one may, and
        requests that arrive meanwhile are served between its windows. Each window has the
        request deadline. Returns every row's dollars, in order, and a ticket that stands for
        the windows' (their flags and scales, and the first device call for tracing)."""
        window = self.window_rows
        timeout = self.runtime.settings.request_timeout_s
        encoded = decoded.encoded
        whole = Ticket()
        values: list[float] = []
        scales: list[float] | None = []
        for start in range(0, encoded.shape[0], window):
            ticket = batcher.submit(encoded[start : start + window], timeout, model)
            if trace is not None:
                if start == 0:
                    trace.submitted(ticket, encoded.shape[0])
                    whole.trace = ticket.trace
                ticket.trace = whole.trace
            with _Watch(self.watches, ticket, receive):
                values += dollars(await ticket.result())
            whole.flagged = whole.flagged or ticket.flagged
            if scales is not None and ticket.scales is not None:
                scales += ticket.scales
            else:
                scales = None
            if whole.batch is None:
                whole.batch = ticket.batch
        whole.scales = scales
        return values, whole

    def submit(
        self,
        batcher: Batcher[Served],
        model: Served,
        decoded: Decoded[C],
        trace: RequestTrace | None,
    ) -> Ticket:
        """Queue decoded rows for ``model``; ``await ticket.result()`` gives their dollars.
        (HTTP watches the client while it waits; gRPC's cancellation abandons the ticket.)"""
        timeout = self.runtime.settings.request_timeout_s
        ticket = batcher.submit(decoded.encoded, timeout, model)
        if trace is not None:
            trace.submitted(ticket, decoded.encoded.shape[0])
        return ticket

    def finish(
        self,
        model: Served,
        decoded: Decoded[C],
        coverage: Coverage | None,
        ticket: Ticket,
        values: list[float],
        trace: RequestTrace | None,
    ) -> tuple[Ranges | None, list[Flag]]:
        """The rows' ranges at ``coverage`` (None: none asked, or none from the model) and
        their flags, once ``ticket`` has their ``values``."""
        if trace is not None:
            trace.ran(ticket)
        flags = []
        if ticket.flagged:
            flags = model.flagger.flags(decoded.encoded, np.asarray(values))
        scales = ticket.scales
        ranges = None if coverage is None or scales is None else coverage.ranges(values, scales)
        return ranges, flags

    def refuse(self, exc: Exception, request_id: str) -> Answer:
        """The answer for a failure; the default is /predict's ``{"detail": ...}`` format."""
        status, payload, extra = error_answer(exc, self.route, request_id, self.max_errors)
        return Answer(orjson.dumps(payload), JSON, status, tuple(extra.items()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = request_id_from(
            None if (rid := headers.get(b"x-request-id")) is None else rid.decode("latin-1")
        )
        tracing = self.runtime.tracing
        trace = None if tracing is None else tracing.request_http("POST", self.route, headers)
        model = None
        body = b""
        try:
            self.guard.admit(scope["method"], headers, self.media_types)
            model = self.runtime.serving()  # the whole request is this model's
            coverage = self.asked_coverage(model, scope["query_string"], headers)
            self.shed_early(headers)
            body = await self.guard.read_body(headers, receive)
            reply = await self.answer(model, body, headers, receive, coverage, trace)
        except ClientDisconnected:
            self.recorder.finish(scope, self.route, 499, started, request_id)
            if trace is not None:
                trace.end_http(499, request_id, None if model is None else model.version)
            return  # nobody is left to answer
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean answer
            reply = self.refuse(exc, request_id)
            self.recorder.metrics.observe_refusal(refusal_reason(exc, reply.status))
        raw: list[tuple[bytes, bytes]] = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", b"%d" % len(reply.body)),
            (b"x-request-id", request_id.encode()),
        ]
        if model is not None:
            raw.append((b"x-model-version", model.version.encode()))
        raw += [(k.lower().encode(), v.encode()) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.body})
        self.recorder.finish(scope, self.route, reply.status, started, request_id)
        if trace is not None:
            trace.end_http(reply.status, request_id, None if model is None else model.version)
        capture = self.runtime.capture
        if capture is not None and reply.status == 200 and model is not None and capture.sampled():
            kind = headers.get(b"content-type", b"application/json").decode("latin-1")
            answer = (reply.content_type, reply.body)
            capture.record(self.route, request_id, model.version, (kind, body), answer)

    def shed_early(self, headers: Headers) -> None:
        """Under load, refuse (503) a request whose rows will not fit in the queue before
        reading its body, judging its rows from Content-Length and ``bytes_per_row``.

        Far past capacity, parsing bodies only to refuse them took most of the CPU: at 512
        connections of 100-row requests, goodput fell to a fifth of normal and refusals took
        140 ms. The estimate can be off for a request unlike the recent ones; it only counts
        while rows are queued, when the request would likely be refused anyway.
        """
        batcher = self.runtime.batcher
        length = headers.get(b"content-length")
        if batcher is None or not batcher.queued_rows or not self.bytes_per_row or not length:
            return
        if not length.isdigit():
            return
        # A request never holds more than HOUSING_MAX_INSTANCES rows in the queue at a time.
        rows = min(int(length) / self.bytes_per_row, self.window_rows)
        if batcher.queued_rows + rows > batcher.queue_rows:
            raise Overloaded(
                f"{batcher.queued_rows} rows are queued and the limit is {batcher.queue_rows}; "
                f"this request holds about {rows:.0f}"
            )
