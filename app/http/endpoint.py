"""The base of the bare ASGI prediction endpoints (``/predict``, ``/invocations``, OIP infer).

Prediction routes are the hot path, so they skip FastAPI's routing, dependency injection and
Request/Response objects (several times the cost of the model call: see docs/performance.md's
benchmark). Every request goes the same way: the guard's checks (``app.http.guard``), the
subclass's ``decode`` into encoded rows and a typed context, the batcher, and the subclass's
``reply`` from the rows' dollars, their intervals at the coverage the request asks for
(``asked_coverage``, ``coverage_for``: ``app.core.intervals``) and that context; any exception
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
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson
from starlette.types import Message, Receive, Scope, Send

from app.core.batching import Ticket
from app.core.flags import Flag
from app.core.inference import Decoded, InferencePath
from app.core.intervals import Coverage, Ranges
from app.core.served import Served
from app.core.timeouts import Timeouts
from app.errors import ClientDisconnected, Overloaded, classify
from app.http.guard import Guard, Headers
from app.http.refusals import error_answer
from app.observe.access import RequestRecorder
from app.observe.logs import request_id_of
from app.observe.tracing import RequestTrace

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


# A request still waiting after this long starts watching for its client's disconnect. Not
# from the start: a watcher is a task per request, which costs more than the whole answer of
# a request that is served within a batch or two (docs/performance.md).
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

    def __init__(self, plane: InferencePath, guard: Guard, recorder: RequestRecorder) -> None:
        self.plane = plane
        runtime = self.runtime = plane.runtime
        self.guard = guard
        self.recorder = recorder
        self.max_errors = runtime.settings.max_error_details
        # Body bytes per row of this route's recent requests (a moving average; 0: none yet).
        self.bytes_per_row = 0.0
        self.watches: Timeouts[_Watch] = Timeouts(WATCH_AFTER_S, _Watch.start)

    def check_target(self, scope: Scope, model: Served) -> None:
        """Refuse a request for another model or version than ``model`` (default: none)."""

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
        request asked for none, or the model has none) and their flags (``app.core.flags``;
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
        """The whole request on ``model`` through the inference path (``app.core.inference``):
        every row of it runs on that model, and every rule (imputation, ranges, warnings) is
        that model's, whatever model is swapped in meanwhile."""
        offload = self.offload_bytes is not None and len(body) > self.offload_bytes
        if offload:
            decoded = await self.plane.offloaded(lambda: self.decode(model, body, headers))
        else:
            with self.plane.arriving():
                decoded = self.decode(model, body, headers)
        rows = decoded.encoded.shape[0]
        if rows:
            seen = len(body) / rows
            self.bytes_per_row += (seen - self.bytes_per_row) * (0.1 if self.bytes_per_row else 1)
        coverage = self.coverage_for(model, decoded, asked)

        def watch(ticket: Ticket) -> _Watch:
            return _Watch(self.watches, ticket, receive)

        done = await self.plane.predict(model, decoded.encoded, coverage, watch, trace)
        if offload:  # its answer is as large: written on the thread too
            return await asyncio.to_thread(
                self.reply, model, done.values, done.ranges, decoded, headers, done.flags
            )
        return self.reply(model, done.values, done.ranges, decoded, headers, done.flags)

    def refuse(self, exc: Exception, request_id: str) -> Answer:
        """The answer for a failure; the default is /predict's ``{"detail": ...}`` format."""
        status, payload, extra = error_answer(exc, self.route, request_id, self.max_errors)
        return Answer(orjson.dumps(payload), JSON, status, tuple(extra.items()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = request_id_of(headers)
        tracing = self.runtime.tracing
        trace = (
            None if tracing is None else tracing.request_http("POST", self.route, headers, scope)
        )
        model = None
        body = b""
        try:
            self.guard.admit(scope["method"], headers, self.media_types)
            model = self.runtime.serving()  # the whole request is this model's
            self.check_target(scope, model)
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
            self.recorder.metrics.observe_refusal(classify(exc).value)
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
        rows = min(int(length) / self.bytes_per_row, self.plane.window_rows)
        if batcher.queued_rows + rows > batcher.queue_rows:
            raise Overloaded(
                f"{batcher.queued_rows} rows are queued and the limit is {batcher.queue_rows}; "
                f"this request holds about {rows:.0f}"
            )
