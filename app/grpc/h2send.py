"""The sending side and the life of an HTTP/2 server connection (RFC 9113): the stream table,
flow control on what we send, closing. ``h2conn`` adds the receiving side on top.

- Our answers respect the peer's connection and stream windows (SETTINGS_INITIAL_WINDOW_SIZE,
  WINDOW_UPDATE) and its SETTINGS_MAX_FRAME_SIZE: DATA is split into frames no longer than
  it, and what does not fit is parked on its stream (in order, with the trailers that end it)
  until a WINDOW_UPDATE or a larger initial window lets it go; parked streams are served in
  turn. Parked bytes are bounded by the answers of the open streams (at most ``MAX_STREAMS``).
- A peer's SETTINGS: more than ``SETTINGS_PAIRS`` settings in one frame is ENHANCE_YOUR_CALM;
  every value is checked (INITIAL_WINDOW_SIZE over 2**31-1 is a FLOW_CONTROL_ERROR,
  MAX_FRAME_SIZE outside 16,384..2**24-1 and ENABLE_PUSH other than 0 or 1 are PROTOCOL_ERRORs),
  then only the frame's last INITIAL_WINDOW_SIZE is applied, in one pass over the streams
  (values are processed in order, so the last one wins): a change that pushes a stream's window
  over 2**31-1 is a FLOW_CONTROL_ERROR. Every SETTINGS is acknowledged.
  WINDOW_UPDATE: not 4 bytes is a FRAME_SIZE_ERROR, an increment of 0 a PROTOCOL_ERROR (a
  stream error on a stream), a window over 2**31-1 a FLOW_CONTROL_ERROR.
- While the transport's write buffer is over its high mark, reading stops (no new calls, no
  PING or SETTINGS answers) and streaming senders wait (``wait_writable``): a client that does
  not read cannot make the buffer grow past the answers of the calls already open.
- Frames produced while a chunk of input is read are gathered (``_emit``) into one
  ``transport.write`` at its end; otherwise they are written at once.
- Ending a stream: when our END_STREAM goes out before the client ended its side, RST_STREAM
  NO_ERROR follows (RFC 9113 section 8.1); the stream leaves the table (``_on_closed``).
- Closing: a connection error sends GOAWAY with its code and the last stream id, resets every
  stream (``_on_reset``) and closes; ``drain`` sends GOAWAY NO_ERROR, refuses later streams and
  closes once no stream is left. A closing connection sends FIN after its last frames and drops
  what still arrives (so the client reads the GOAWAY rather than a reset) until the client
  closes too, at most ``LINGER_S`` seconds, then the transport is aborted.
- Floods are counted with ``Budget``: past the budget, ENHANCE_YOUR_CALM and close.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from app.grpc.http2 import (
    ACK,
    DATA,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    ENABLE_PUSH,
    INITIAL_WINDOW_SIZE,
    LARGEST_MAX_FRAME,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    SETTINGS_ACK,
    Budget,
    ConnectionFault,
    ErrorCode,
    RecvWindow,
    StreamFault,
    frame_head,
    goaway,
    parse_settings,
    read_u32,
    rst_stream,
)

MAX_STREAMS = 256
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
RESETS = 200  # streams reset by the client, refused, or reset for a stream error, per second
CONTROL = 1_000  # PING, SETTINGS and empty DATA frames per second
SETTINGS_PAIRS = 100  # settings in one SETTINGS frame (a handful are defined)
LINGER_S = 2.0

OPENING, FIRST_SETTINGS, FRAMES, CLOSED = range(4)


class H2Stream:
    """The HTTP/2 state of one stream; ``answers`` adds the call's."""

    __slots__ = (
        "closed", "parked", "queued", "recv", "remote_closed", "send_window", "stream_id",
        "tail", "waiter",
    )  # fmt: skip

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.send_window = DEFAULT_WINDOW
        self.recv = RecvWindow(STREAM_WINDOW)
        self.remote_closed = False
        self.closed = False
        self.parked: deque[memoryview] = deque()  # DATA waiting for window
        self.tail: bytes | None = None  # the frames that end the stream, after ``parked``
        self.queued = False
        self.waiter: asyncio.Future[None] | None = None


S = TypeVar("S", bound=H2Stream)


class H2Streams(asyncio.Protocol, Generic[S]):
    """Stream table, sending and closing; ``h2conn.H2Connection`` reads the frames."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._stage = OPENING
        self._out: list[bytes] | None = None
        self._streams: dict[int, S] = {}
        self._last_sid = 0
        self._goaway_sid: int | None = None
        self._peer_gone = False
        self._send_window = DEFAULT_WINDOW
        self._peer_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._parked: deque[S] = deque()
        self._write_paused = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._resets = Budget(RESETS, 1.0)
        self._control = Budget(CONTROL, 1.0)

    def _spend(self, budget: Budget, what: str) -> None:
        if not budget.spend(self._loop.time()):
            raise ConnectionFault(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"more than {budget.limit} {what} within {budget.period:g} s: slow down",
            )

    # ----- hooks for the layer above
    def _new_stream(self, stream_id: int) -> S:
        raise NotImplementedError

    def _on_request(self, stream: S, block: bytes, end_stream: bool) -> None:
        """A new stream's complete header block (still HPACK-encoded: ``_decode`` it)."""

    def _on_body(self, stream: S, chunk: memoryview, end_stream: bool) -> None:
        """DATA on an open stream (``chunk`` is only valid during the call: copy it)."""

    def _on_reset(self, stream: S) -> None:
        """The stream was reset (by the client, by a stream error, by the connection closing)."""

    def _on_closed(self, stream: S) -> None:
        """Our END_STREAM went out: the stream has left the table."""

    def _on_lost(self) -> None:
        """The connection is gone (every stream has had ``_on_reset``)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._stage = CLOSED
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._reset_all()
        self._on_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._transport is not None and self._stage != CLOSED:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._transport is not None and self._stage != CLOSED:
            self._transport.resume_reading()
        for stream in self._streams.values():
            if not stream.parked:
                self._wake(stream)

    def _settings(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK is empty")
            return
        self._spend(self._control, "SETTINGS frames")
        if len(payload) > 6 * SETTINGS_PAIRS:
            raise ConnectionFault(
                ErrorCode.ENHANCE_YOUR_CALM, f"more than {SETTINGS_PAIRS} settings in one frame"
            )
        window = None
        for key, value in parse_settings(payload):
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
                window = value  # the last one wins: only it is applied to the streams
            elif key == MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= LARGEST_MAX_FRAME:
                    raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == ENABLE_PUSH and value > 1:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH")
        grown: list[S] = []
        if window is not None and window != self._peer_window:
            delta = window - self._peer_window
            self._peer_window = window
            for stream in self._streams.values():  # one pass, however many pairs
                stream.send_window += delta
                if stream.send_window > MAX_WINDOW:
                    raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
                if delta > 0 and (stream.parked or stream.tail is not None):
                    grown.append(stream)
        self._emit(SETTINGS_ACK)
        for stream in grown:
            if not stream.closed:
                self._flush(stream)

    def _window_update(self, payload: memoryview, flags: int, sid: int) -> None:
        if len(payload) != 4:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE is 4 bytes")
        increment = read_u32(payload)
        if sid == 0:
            if increment == 0:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
            self._drain_parked()
            return
        stream = self._streams.get(sid)
        if stream is None:
            if sid > self._last_sid:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if increment == 0:
            raise StreamFault(sid, ErrorCode.PROTOCOL_ERROR)
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise StreamFault(sid, ErrorCode.FLOW_CONTROL_ERROR)
        if stream.parked or stream.tail is not None:
            self._flush(stream)

    def _emit(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self._transport is not None and self._stage != CLOSED:
            self._transport.write(data)

    def _drop(self, stream: S) -> None:
        stream.closed = True
        stream.parked.clear()
        stream.tail = None
        self._unqueue(stream)
        self._wake(stream)

    def _unqueue(self, stream: S) -> None:
        """Out of the parked queue (which so holds open streams only: at most MAX_STREAMS)."""
        if stream.queued:
            stream.queued = False
            self._parked.remove(stream)

    def _wake(self, stream: S) -> None:
        waiter = stream.waiter
        if waiter is not None:
            stream.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _reset_all(self) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            self._drop(stream)
            self._on_reset(stream)

    def _maybe_idle(self) -> None:
        if not self._streams and (self._goaway_sid is not None or self._peer_gone):
            self._close(self._out)

    def _close(self, out: list[bytes] | None) -> None:
        if self._stage == CLOSED or self._transport is None:
            return
        self._stage = CLOSED
        transport = self._transport
        if out:
            transport.write(b"".join(out))
            out.clear()
        try:  # FIN after the last frames; what still comes is dropped
            transport.resume_reading()
            transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):  # gone already, or cannot
            transport.close()
        self._abort_timer = self._loop.call_later(LINGER_S, transport.abort)

    def _fail(self, code: ErrorCode, debug: str, out: list[bytes] | None = None) -> None:
        """A connection error: GOAWAY, every call reset, the connection closed."""
        if self._stage == CLOSED:
            return
        out = out if out is not None else []
        out.append(goaway(self._last_sid, code, debug.encode()))
        self._close(out)
        self._reset_all()

    def drain(self) -> None:
        """GOAWAY with the last stream id: later streams are refused; close once idle."""
        if self._stage != FRAMES:
            self._close(None)
            self._reset_all()
            return
        if self._goaway_sid is None:
            self._goaway_sid = self._last_sid
            self._emit(goaway(self._last_sid, ErrorCode.NO_ERROR))
        self._maybe_idle()

    def stop_now(self) -> None:
        """GOAWAY NO_ERROR, every stream reset (its call cancelled), the connection closed."""
        self._fail(ErrorCode.NO_ERROR, "the server stopped")

    def wait_writable(self, stream: S) -> asyncio.Future[None] | None:
        """A future to await before sending more on ``stream`` (None: go on now)."""
        if not stream.parked and not self._write_paused:
            return None
        stream.waiter = self._loop.create_future()
        return stream.waiter

    def send(self, stream: S, head: bytes, data: bytes, tail: bytes | None) -> None:
        """``head`` (whole HEADERS frames), then ``data`` as DATA within the windows, then
        ``tail`` (whole frames ending the stream; None: the stream stays open)."""
        if stream.closed:
            return
        n = len(data)
        if (
            not stream.parked
            and n <= self._send_window
            and n <= stream.send_window
            and n <= self._peer_max_frame
        ):
            self._send_window -= n
            stream.send_window -= n
            if n:
                head += frame_head(n, DATA, 0, stream.stream_id) + data
            if tail is None:
                self._emit(head)
                return
            if not stream.remote_closed:
                tail += rst_stream(stream.stream_id, ErrorCode.NO_ERROR)
            self._emit(head + tail)
            self._finish(stream)
            return
        if head:
            self._emit(head)
        if n:
            stream.parked.append(memoryview(data))
        stream.tail = tail
        self._flush(stream)

    def _flush(self, stream: S) -> None:
        parked = stream.parked
        sid = stream.stream_id
        out: list[bytes | memoryview] = []
        while parked:
            allowed = min(self._send_window, stream.send_window, self._peer_max_frame)
            if allowed <= 0:
                break
            chunk = parked[0]
            if len(chunk) <= allowed:
                parked.popleft()
            else:
                parked[0] = chunk[allowed:]
                chunk = chunk[:allowed]
            self._send_window -= len(chunk)
            stream.send_window -= len(chunk)
            out += (frame_head(len(chunk), DATA, 0, sid), chunk)
        tail = stream.tail
        if not parked and tail is not None:
            out.append(tail)
            if not stream.remote_closed:
                out.append(rst_stream(sid, ErrorCode.NO_ERROR))
            self._emit(b"".join(out))
            self._finish(stream)
            return
        if out:
            self._emit(b"".join(out))
        if parked:
            if not stream.queued:
                stream.queued = True
                self._parked.append(stream)
            return
        self._unqueue(stream)
        if not self._write_paused:
            self._wake(stream)

    def _drain_parked(self) -> None:
        """Parked streams in turn, while the connection window lasts (each at most once)."""
        queue = self._parked
        for _ in range(len(queue)):
            if self._send_window <= 0 or not queue:
                return
            stream = queue.popleft()
            stream.queued = False
            if not stream.closed:
                self._flush(stream)

    def _finish(self, stream: S) -> None:
        stream.closed = True
        stream.tail = None
        self._unqueue(stream)
        self._streams.pop(stream.stream_id, None)
        self._wake(stream)
        self._on_closed(stream)
        self._maybe_idle()
