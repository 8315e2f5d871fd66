"""Running a gRPC call's handler and answering it, on an HTTP/2 connection (``h2conn``).

``dispatch`` reads the request and calls ``_start``; this module runs the handler as a task and
writes the answer.

- Unary: HEADERS (``:status 200``, ``content-type: application/grpc``), DATA (prefix +
  message) and the trailers HEADERS with END_STREAM (``grpc-status: 0`` and ``Call.trailers``),
  in one write when the windows allow (precomputed heads, the stream id packed in).
- An error with no message sent yet is a trailers-only response: one HEADERS frame with the
  head, ``grpc-status``, ``grpc-message`` and the trailers (``Call.trailers`` then the
  ``RpcError``'s), END_STREAM. When the client has not ended its side, RST_STREAM NO_ERROR
  follows the end of every answer (RFC 9113 section 8.1).
- ``RpcError`` answers its status and details; any other exception answers UNKNOWN with a fixed
  message and is logged once with its traceback at ERROR on ``housing.grpc``; so is a handler
  returning something other than bytes, and trailers that are not valid metadata answer INTERNAL.
- Server streaming: each yielded message is sent as it comes; before the next one the task waits
  until the stream's parked DATA has gone out and the write buffer is under its high mark; the
  iterator is closed (``aclose``) when the call ends any way.
- The deadline (one ``loop.call_at`` per call with ``grpc-timeout``): ``Call.ended`` is set to
  DEADLINE_EXCEEDED, the handler task is cancelled and the call answers DEADLINE_EXCEEDED.
- The body timeout: a call whose message is not whole when the chunk holding its HEADERS has
  been read must complete it within ``header_timeout_s`` (``HOUSING_HEADER_TIMEOUT_S``, the
  same bound as a connection's first HEADERS), else ``Call.ended`` and the answer are
  DEADLINE_EXCEEDED, naming the setting. These timeouts share one loop timer per connection
  (``app.core.timeouts.Timeouts``); a message that arrives with its HEADERS never enters it.
- ``_buffered`` counts the declared lengths of the messages a connection is reading (the bound
  is ``dispatch``'s); a message's count ends when it is whole, or its call ends.
- RST_STREAM from the client, a stream error or the connection closing: ``Call.ended`` is set
  to CANCELLED (DEADLINE_EXCEEDED when the call's deadline is within ``DEADLINE_SLACK_S``: the
  client's own deadline reset it) and the task cancelled; nothing is answered.
- ``Method.unfinished`` is told, once, of an admitted call that ends before its handler
  starts, with the status it ended with.
- ``Shared.in_flight`` counts streams from their HEADERS until both the stream has closed and
  its handler task has finished.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from functools import partial

from app.core.timeouts import Timeouts
from app.grpc.h2conn import H2Connection
from app.grpc.h2send import H2Stream
from app.grpc.http2 import (
    DEFAULT_MAX_FRAME,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    ErrorCode,
    frame_head,
    headers_frames,
)
from app.grpc.wire import OK_TRAILERS, RESPONSE_HEAD, Call, Method, RpcError, Status, status_block

logger = logging.getLogger("housing.grpc")

PREFIX = struct.Struct(">BL")
_SID = struct.Struct(">L").pack
_HEAD_FRAME = frame_head(len(RESPONSE_HEAD), HEADERS, END_HEADERS, 0)[:5]
_OK_FRAME = frame_head(len(OK_TRAILERS), HEADERS, END_HEADERS | END_STREAM, 0)[:5]
FAILED = "the method failed on the server; its log (logger housing.grpc) has the traceback"


class Shared:
    """What the connections of one ``GrpcServer`` share."""

    __slots__ = (
        "connections", "done", "header_timeout", "in_flight", "max_connections",
        "max_message", "methods", "on_refused", "stopping",
    )  # fmt: skip

    def __init__(
        self,
        methods: dict[str, Method],
        max_message: int,
        max_connections: int,
        header_timeout: float,
        on_refused: Callable[[str], None] | None,
    ) -> None:
        self.methods = methods
        self.max_message = max_message
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.on_refused = on_refused
        self.connections: set[CallRunner] = set()
        self.in_flight = 0
        self.stopping = False
        self.done: asyncio.Future[None] | None = None

    def done_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """``done``, made on first need: resolved once stopping with nothing left (``check``)."""
        if self.done is None:
            self.done = loop.create_future()
        return self.done

    def refused(self, why: str) -> None:
        if self.on_refused is not None:
            self.on_refused(why)

    def check(self) -> None:
        """Resolves ``done`` once stopping, with no connection and no call left."""
        done = self.done
        if done is None or done.done() or not self.stopping:
            return
        if not self.connections and self.in_flight == 0:
            done.set_result(None)


# A reset this close to the call's deadline is counted as DEADLINE_EXCEEDED, not CANCELLED.
DEADLINE_SLACK_S = 0.1


class GrpcStream(H2Stream):
    __slots__ = (
        "admitted", "answered", "buf", "call", "count", "encoding", "flag", "head_sent",
        "method", "need", "reserved", "settled", "started", "task", "timer", "waiting",
    )  # fmt: skip

    def __init__(self, stream_id: int) -> None:
        super().__init__(stream_id)
        self.call: Call | None = None
        self.method: Method | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.buf = bytearray()  # the message (or its prefix) being read
        self.need = -1  # the message's length once its prefix is read
        self.flag = 0
        self.count = 0
        self.encoding: bytes | None = None
        self.answered = False
        self.admitted = False  # admit let it through: its end is told (Method.unfinished)
        self.started = False  # its handler was started
        self.head_sent = False
        self.settled = False
        self.reserved = 0  # the length of the message being read, counted in ``_buffered``
        self.waiting = False  # in ``_late``: its message is due within the header timeout


class CallRunner(H2Connection[GrpcStream]):
    def __init__(self, shared: Shared, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._shared = shared
        self._buffered = 0  # the lengths of the messages being read (``GrpcStream.reserved``)
        self._late: Timeouts[GrpcStream] = Timeouts(shared.header_timeout, self._body_late)

    def _let_go(self, stream: GrpcStream) -> None:
        """The stream waits for its message no more: its reservation and body timeout end."""
        if stream.reserved:
            self._buffered -= stream.reserved
            stream.reserved = 0
            del stream.buf[:]
        if stream.waiting:
            stream.waiting = False
            self._late.discard(stream)

    def _start(self, stream: GrpcStream, message: bytes) -> None:
        self._let_go(stream)
        method = stream.method
        if method is None or stream.task is not None:
            return
        stream.started = True
        if method.unary is not None:
            stream.task = self._loop.create_task(self._run_unary(stream, method, message))
        else:
            stream.task = self._loop.create_task(self._run_stream(stream, method, message))

    def _end_on(self, stream: GrpcStream, call: Call, exc: BaseException) -> None:
        """The status of a handler that raised: its RpcError's, CANCELLED, or UNKNOWN with the
        traceback logged (never sent)."""
        if isinstance(exc, RpcError):
            self._end(stream, exc.status, exc.details, exc.trailers)
        elif isinstance(exc, asyncio.CancelledError):
            self._end(stream, Status.CANCELLED, "the call was cancelled")
        else:
            logger.error("the gRPC method %s failed", call.method, exc_info=exc)
            self._end(stream, Status.UNKNOWN, FAILED)

    async def _run_unary(self, stream: GrpcStream, method: Method, message: bytes) -> None:
        call = stream.call
        if call is None or method.unary is None:
            return
        try:
            answer = await method.unary(call, message)
            if not isinstance(answer, bytes | bytearray):
                raise TypeError(f"{call.method} returned {type(answer).__name__}, not bytes")
        except (asyncio.CancelledError, Exception) as exc:
            self._end_on(stream, call, exc)
        else:
            self._answer(stream, answer)
        finally:
            stream.task = None
            self._settle(stream)

    async def _run_stream(self, stream: GrpcStream, method: Method, message: bytes) -> None:
        call = stream.call
        if call is None or method.stream is None:
            return
        messages = method.stream(call, message)
        try:
            async for answer in messages:
                if stream.answered or stream.closed:
                    break
                self._message(stream, answer)
                waiter = self.wait_writable(stream)
                if waiter is not None:
                    await waiter
        except (asyncio.CancelledError, Exception) as exc:
            self._end_on(stream, call, exc)
        else:
            self._end(stream, Status.OK, "")
        finally:
            try:
                close = getattr(messages, "aclose", None)
                if close is not None:
                    await close()
            except Exception:
                logger.exception("closing the stream of %s failed", call.method)
            finally:
                stream.task = None
                self._settle(stream)

    def _answer(self, stream: GrpcStream, answer: bytes | bytearray) -> None:
        """The unary answer: head, message and OK trailers."""
        if stream.answered:
            return
        call = stream.call
        sid = _SID(stream.stream_id)
        if call is None or not call.trailers:
            tail = _OK_FRAME + sid + OK_TRAILERS
        else:
            try:
                block = status_block(Status.OK, "", call.trailers)
            except ValueError as error:
                logger.error("the gRPC method %s: %s", call.method, error)
                self._end_block(stream, status_block(Status.INTERNAL, str(error), ()))
                return
            tail = headers_frames(stream.stream_id, block, True, self._peer_max_frame)
        stream.answered = True
        stream.head_sent = True
        self._stop_timer(stream)
        head = _HEAD_FRAME + sid + RESPONSE_HEAD
        self.send(stream, head, PREFIX.pack(0, len(answer)) + answer, tail)

    def _message(self, stream: GrpcStream, answer: bytes | bytearray) -> None:
        """One streamed message (the head before the first)."""
        if not isinstance(answer, bytes | bytearray):
            raise TypeError(f"a stream yielded {type(answer).__name__}, not bytes")
        head = b""
        if not stream.head_sent:
            stream.head_sent = True
            head = _HEAD_FRAME + _SID(stream.stream_id) + RESPONSE_HEAD
        self.send(stream, head, PREFIX.pack(0, len(answer)) + answer, None)

    def _end(
        self,
        stream: GrpcStream,
        status: Status,
        details: str,
        trailers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """The call's status (trailers-only when nothing was sent yet)."""
        if stream.answered or stream.closed:
            return
        self._tell_unfinished(stream, status)
        call = stream.call
        everything = [*call.trailers, *trailers] if call is not None else list(trailers)
        try:
            block = status_block(status, details, everything)
        except ValueError as error:
            logger.error("the gRPC method %s: %s", call.method if call else "?", error)
            block = status_block(Status.INTERNAL, str(error), ())
        self._end_block(stream, block)

    def _tell_unfinished(self, stream: GrpcStream, status: Status) -> None:
        """``Method.unfinished``, once, for an admitted call whose handler never ran."""
        method, call = stream.method, stream.call
        if not stream.admitted or stream.started or method is None or call is None:
            return
        stream.admitted = False  # told once
        if method.unfinished is not None:
            try:
                method.unfinished(call, call.ended or status)
            except Exception:
                logger.exception("telling of an unfinished call to %s failed", call.method)

    def _end_block(self, stream: GrpcStream, block: bytes) -> None:
        stream.answered = True
        self._stop_timer(stream)
        self._let_go(stream)
        if not stream.head_sent:
            block = RESPONSE_HEAD + block
        tail = headers_frames(stream.stream_id, block, True, self._peer_max_frame)
        self.send(stream, b"", b"", tail)

    def _http_error(self, stream: GrpcStream, block: bytes) -> None:
        """A plain HTTP answer (405, 415): one HEADERS frame with END_STREAM."""
        stream.answered = True
        self.send(
            stream, b"", b"", headers_frames(stream.stream_id, block, True, DEFAULT_MAX_FRAME)
        )

    def _expire(self, stream: GrpcStream) -> None:
        stream.timer = None
        call = stream.call
        if stream.answered or stream.closed or call is None:
            return
        try:
            call.ended = Status.DEADLINE_EXCEEDED
            self._cancel(stream)
            self._end(stream, Status.DEADLINE_EXCEEDED, "Deadline Exceeded")
        except Exception:
            logger.exception("expiring a gRPC call failed; the connection is closed")
            self._fail(ErrorCode.INTERNAL_ERROR, "internal error")

    def _body_late(self, stream: GrpcStream) -> None:
        """The header timeout passed since the call's HEADERS and its message is not whole."""
        stream.waiting = False
        call = stream.call
        if stream.started or stream.answered or stream.closed or call is None:
            return
        try:
            call.ended = Status.DEADLINE_EXCEEDED
            self._end(stream, Status.DEADLINE_EXCEEDED, "the call's message did not arrive "
                      f"within HOUSING_HEADER_TIMEOUT_S={self._late.delay:g} s of its headers: "
                      "send the whole message promptly")  # fmt: skip
        except Exception:
            logger.exception("ending a late gRPC call failed; the connection is closed")
            self._fail(ErrorCode.INTERNAL_ERROR, "internal error")

    def _cancel(self, stream: GrpcStream) -> None:
        """Cancels the handler; a task cancelled before its first step never runs its
        ``finally``, so the done callback settles the stream."""
        task = stream.task
        if task is not None and not task.done():
            task.cancel()
            task.add_done_callback(partial(self._cancelled, stream))

    def _cancelled(self, stream: GrpcStream, task: asyncio.Task[None]) -> None:
        if stream.task is task:
            stream.task = None
        self._settle(stream)

    def _stop_timer(self, stream: GrpcStream) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None

    def _on_reset(self, stream: GrpcStream) -> None:
        self._stop_timer(stream)
        self._let_go(stream)
        call = stream.call
        if call is not None and call.ended is None and not stream.answered:
            # A client whose deadline passes resets the stream itself, a moment before our
            # copy of that deadline (computed on arrival) passes: that is an expiry.
            remaining = call.time_remaining()
            expired = remaining is not None and remaining <= DEADLINE_SLACK_S
            call.ended = Status.DEADLINE_EXCEEDED if expired else Status.CANCELLED
        self._tell_unfinished(stream, Status.CANCELLED)
        stream.answered = True
        self._cancel(stream)
        self._settle(stream)

    def _on_closed(self, stream: GrpcStream) -> None:
        self._settle(stream)

    def _settle(self, stream: GrpcStream) -> None:
        if stream.settled or stream.task is not None or not stream.closed:
            return
        stream.settled = True
        self._stop_timer(stream)
        self._tell_unfinished(stream, Status.CANCELLED)
        shared = self._shared
        shared.in_flight -= 1
        if shared.stopping:
            shared.check()
