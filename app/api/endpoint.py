"""The base of the bare ASGI prediction endpoints (``/predict``, ``/invocations``, OIP infer).

Prediction routes are the hot path, so they skip FastAPI's routing, dependency injection and
Request/Response objects (several times the cost of the model call: see the README's
benchmark). Every one of them does the same checks first, in this order, each refusing with a
clear status: method (405), API key (401), content type (415), body size (413). Then the
subclass's ``decode``, the batcher, and the subclass's ``reply``; any exception becomes the
subclass's ``refuse`` answer. The request id (``X-Request-ID``, taken or made) is on every
answer and log line, and is the ``error_id`` of a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.types import Message, Receive, Scope, Send

from app.batching import DeadlineExceeded, Overloaded, ShuttingDown, Ticket
from app.errors import ClientDisconnected, NotReadyError, RequestRefused, error_answer
from app.flags import Flag
from app.observe.access import Observer
from app.observe.logs import request_id_from
from app.runtime import ModelRuntime

JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str = JSON
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Decoded:
    """A checked request: its encoded rows, and what ``reply`` needs to answer in kind."""

    encoded: np.ndarray
    context: Any = None


@dataclass(frozen=True)
class Guard:
    """The checks every prediction route shares, from the settings."""

    max_body_bytes: int
    api_key: bytes | None

    def check_key(self, headers: dict[bytes, bytes]) -> None:
        if self.api_key is None:
            return
        given = headers.get(b"x-api-key")
        if given is None:
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            given = token.strip() if scheme.lower() == b"bearer" else None
        # Constant time, so the key cannot be guessed byte by byte from response times.
        if given is None or not hmac.compare_digest(given, self.api_key):
            raise RequestRefused(
                401,
                "missing or wrong API key. Hint: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' with the value of HOUSING_API_KEY.",
                {"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large()  # refused before a byte of the body is read
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_body_bytes:
                raise self._too_large()
            return body  # the common case: the whole body in one message
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # chunked uploads have no content-length
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> RequestRefused:
        return RequestRefused(
            413,
            f"the body is larger than HOUSING_MAX_BODY_BYTES={self.max_body_bytes} bytes. "
            "Hint: split the request, or raise the limit.",
            {"Connection": "close"},  # the rest of the body is never read: drop the connection
        )


# A request still waiting after this long starts watching for its client's disconnect. Not
# from the start: a watcher is a task per request, which costs more than the whole answer of
# a request that is served within a batch or two (measured: -30% req/s and a 100 ms p99).
WATCH_AFTER_S = 0.02


async def result_unless_disconnected(ticket: Ticket, receive: Receive) -> np.ndarray:
    """The ticket's result; if the client disconnects first, its rows are dropped unrun.

    Once the body is read, the next ASGI ``receive()`` only returns when the client goes away.
    """
    loop = asyncio.get_running_loop()
    watch: asyncio.Future[Message] | None = None

    def on_message(task: asyncio.Future[Message]) -> None:
        ok = not task.cancelled() and task.exception() is None
        if ok and task.result()["type"] == "http.disconnect":
            ticket.abandon(ClientDisconnected())

    def start_watching() -> None:
        nonlocal watch
        watch = asyncio.ensure_future(receive())
        watch.add_done_callback(on_message)

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await ticket.result()
    finally:
        timer.cancel()
        if watch is not None:
            watch.cancel()


def dollars(values: np.ndarray) -> list[float]:
    # Python's round for a few values (np.round has a fixed cost of several us), numpy's for many.
    if values.shape[0] <= 8:
        dollars = [round(v, 2) for v in values.tolist()]
    else:
        dollars = np.round(values, 2).tolist()
    if not all(map(math.isfinite, dollars)):
        raise RuntimeError("the model produced a non-finite value")
    return dollars


def media_type(value: bytes | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``; absent -> ``""``."""
    if value is None:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


class PredictionEndpoint:
    """Subclasses set ``route`` and ``media_types`` and write ``decode`` and ``reply`` (and
    ``refuse`` for a protocol with its own error format)."""

    route = ""
    # Accepted request media types; "" stands for a request without a Content-Type.
    media_types: frozenset[str] = frozenset({JSON, ""})

    def __init__(self, runtime: ModelRuntime, guard: Guard, observer: Observer) -> None:
        self.runtime = runtime
        self.guard = guard
        self.observer = observer
        # Body bytes per row of this route's recent requests (a moving average; 0: none yet).
        self.bytes_per_row = 0.0

    def decode(self, body: bytes, headers: dict[bytes, bytes]) -> Decoded:
        """Parse and validate the body into encoded rows (raise to refuse it)."""
        raise NotImplementedError

    def reply(
        self, values: list[float], decoded: Decoded, headers: dict[bytes, bytes], flags: list[Flag]
    ) -> Answer:
        """The answer for the rows' values in dollars, in order, and their flags
        (``app.flags``; already counted in the metrics)."""
        raise NotImplementedError

    async def answer(self, body: bytes, headers: dict[bytes, bytes], receive: Receive) -> Answer:
        runtime = self.runtime
        batcher = runtime.accepting_batcher()
        # While this request is parsed, the batcher may wait for its rows (see batching.py).
        batcher.arrive()
        try:
            decoded = self.decode(body, headers)
        finally:
            batcher.arrived()
        rows = decoded.encoded.shape[0]
        if rows:
            seen = len(body) / rows
            self.bytes_per_row += (seen - self.bytes_per_row) * (0.1 if self.bytes_per_row else 1)
        ticket = batcher.submit(decoded.encoded, runtime.settings.request_timeout_s)
        out = await result_unless_disconnected(ticket, receive)
        values = dollars(out)
        return self.reply(values, decoded, headers, runtime.flagger.flags(decoded.encoded, out))

    def refuse(self, exc: Exception, request_id: str) -> Answer:
        """The answer for a failure; the default is /predict's ``{"detail": ...}`` format."""
        status, payload, extra = error_answer(exc, self.route, request_id)
        return Answer(orjson.dumps(payload), JSON, status, tuple(extra.items()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = request_id_from(
            None if (rid := headers.get(b"x-request-id")) is None else rid.decode("latin-1")
        )
        try:
            reply = await self._run(scope, headers, receive)
        except ClientDisconnected:
            self.observer.finish(scope, self.route, 499, started, request_id)
            return  # nobody is left to answer
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean answer
            reply = self.refuse(exc, request_id)
            self.observer.metrics.observe_refusal(refusal_reason(exc, reply.status))
        raw: list[tuple[bytes, bytes]] = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", b"%d" % len(reply.body)),
            (b"x-request-id", request_id.encode()),
        ]
        raw += [(k.lower().encode(), v.encode()) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.body})
        self.observer.finish(scope, self.route, reply.status, started, request_id)

    async def _run(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Answer:
        if scope["method"] != "POST":
            raise RequestRefused(405, "use POST", {"Allow": "POST"})
        self.guard.check_key(headers)
        kind = media_type(headers.get(b"content-type"))
        if kind not in self.media_types:
            accepted = ", ".join(sorted(t for t in self.media_types if t))
            raise RequestRefused(
                415, f"content type {kind!r} is not accepted here. Hint: send one of {accepted}."
            )
        self.shed_early(headers)
        body = await self.guard.read_body(headers, receive)
        return await self.answer(body, headers, receive)

    def shed_early(self, headers: dict[bytes, bytes]) -> None:
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
        rows = int(length) / self.bytes_per_row
        if batcher.queued_rows + rows > batcher.queue_rows:
            raise Overloaded(
                f"{batcher.queued_rows} rows are queued and the limit is {batcher.queue_rows}; "
                f"this request holds about {rows:.0f}"
            )


_REASONS = {401: "unauthorized", 405: "method", 413: "too_large", 415: "media_type"}


def refusal_reason(exc: Exception, status: int) -> str:
    """The ``reason`` label of ``housing_rejected_requests`` for a failed request."""
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, DeadlineExceeded):
        return "expired"
    if isinstance(exc, NotReadyError | ShuttingDown):
        return "not_ready"
    if status in _REASONS:
        return _REASONS[status]
    return "invalid" if status < 500 else "error"
