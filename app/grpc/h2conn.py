"""One HTTP/2 server connection on asyncio (RFC 9113), under the gRPC layer (``dispatch``).

Receiving. The client's bytes are cut into frames from a memoryview as they arrive; what is left
over is less than one frame, so the receive buffer never holds more than 9 + 16,384 bytes
beyond the chunk being read. Refused, each as a connection error (GOAWAY with the code, then
close): anything but the 24-byte preface (PROTOCOL_ERROR), a first frame that is not SETTINGS
(PROTOCOL_ERROR), a frame longer than our SETTINGS_MAX_FRAME_SIZE of 16,384 (FRAME_SIZE_ERROR,
as soon as its head arrives), DATA or HEADERS on stream 0, on an even stream or on a stream never
opened (PROTOCOL_ERROR), PUSH_PROMISE (PROTOCOL_ERROR), a header block split by another frame
(PROTOCOL_ERROR), a header block over 32 KiB compressed or over 64 CONTINUATION frames
(ENHANCE_YOUR_CALM: no unbounded buffering), a header list over 16 KiB once decoded or a block
that does not decode (ENHANCE_YOUR_CALM / COMPRESSION_ERROR: the HPACK state is lost with it),
DATA beyond the connection window or a window pushed past 2**31-1 (FLOW_CONTROL_ERROR), bad
lengths for SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY (FRAME_SIZE_ERROR), invalid
settings values (PROTOCOL_ERROR / FLOW_CONTROL_ERROR). Floods close the connection with
ENHANCE_YOUR_CALM: more than ``RESETS`` streams reset by the client (or refused) per second
(rapid reset, CVE-2023-44487), more than ``CONTROL`` PINGs, SETTINGS or empty DATA frames per
second. Stream errors (RST_STREAM, the connection goes on): DATA beyond a stream's window
(FLOW_CONTROL_ERROR), DATA after the client ended the stream (STREAM_CLOSED), a bad PRIORITY
length (FRAME_SIZE_ERROR), a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS = ``MAX_STREAMS``
or after our GOAWAY (REFUSED_STREAM). PRIORITY and unknown frame types are ignored; frames on
streams already closed are dropped (their DATA still counts against the connection window).
An exception other than these (a bug) is logged once and closes the connection with
INTERNAL_ERROR: nothing escapes into the event loop.

Flow control. We advertise a stream window of ``STREAM_WINDOW`` and a connection window of
``CONNECTION_WINDOW`` and give DATA back (WINDOW_UPDATE) once half of a window has been read.
Sending respects the peer's connection and stream windows and its SETTINGS_MAX_FRAME_SIZE: DATA
is split, and what does not fit is parked on its stream until a WINDOW_UPDATE (parked bytes are
bounded by the answers of the open streams). While the transport's write buffer is over its high
mark we stop reading (no new calls, no PING answers), so a client that does not read cannot
make the buffer grow beyond the answers of the calls already open.

Frames produced while a chunk is being read go out in one ``transport.write`` at its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Generic, TypeVar, cast

import hpack

from app.grpc.http2 import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    HEAD,
    INITIAL_WINDOW_SIZE,
    LARGEST_MAX_FRAME,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    MAX_WINDOW,
    PADDED,
    PREFACE,
    PRIORITY_FLAG,
    SETTINGS,
    SETTINGS_ACK,
    STREAM_MASK,
    Budget,
    ConnectionFault,
    ErrorCode,
    RecvWindow,
    StreamFault,
    frame_head,
    goaway,
    parse_settings,
    ping_ack,
    read_u32,
    rst_stream,
    settings_frame,
    window_update,
)

logger = logging.getLogger("housing.grpc")

MAX_STREAMS = 256
HEADER_LIST = 16_384
MAX_BLOCK = 2 * HEADER_LIST
MAX_CONTINUATIONS = 64
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
RESETS = 200
CONTROL = 1_000
# A closing connection sends FIN after its last frames and drops what still arrives (so the
# client reads the GOAWAY instead of a reset) until the client closes too, at most this long.
LINGER_S = 2.0

_PREFACE, _FIRST_SETTINGS, _FRAMES, CLOSED = range(4)
_CLOSED = CLOSED
_EMPTY = memoryview(b"")


class H2Stream:
    """The HTTP/2 state of one stream; ``dispatch`` adds the call's."""

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
        self.parked: deque[memoryview] = deque()
        self.tail: bytes | None = None
        self.queued = False
        self.waiter: asyncio.Future[None] | None = None


S = TypeVar("S", bound=H2Stream)


class H2Connection(asyncio.Protocol, Generic[S]):
    """The frame loop, stream table and flow control; subclasses answer the requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._stage = _PREFACE
        self._buf = bytearray()
        self._out: list[bytes] | None = None
        self._streams: dict[int, S] = {}
        self._last_sid = 0
        self._goaway_sid: int | None = None
        self._peer_gone = False
        self._cont_sid = 0
        self._cont_end = 0
        self._cont_frames = 0
        self._cont_block = bytearray()
        self._decoder = hpack.Decoder(max_header_list_size=HEADER_LIST)
        self.hpack_version = 0
        self._recv = RecvWindow(CONNECTION_WINDOW)
        self._send_window = DEFAULT_WINDOW
        self._peer_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._parked: deque[S] = deque()
        self._write_paused = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._resets = Budget(RESETS, 1.0)
        self._control = Budget(CONTROL, 1.0)
        self._handlers = (
            self._data, self._headers, self._priority, self._rst_stream, self._settings,
            self._push_promise, self._ping, self._goaway, self._window_update, self._continuation,
        )  # fmt: skip

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

    # ----- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(
            settings_frame(
                (
                    (MAX_CONCURRENT_STREAMS, MAX_STREAMS),
                    (INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                    (MAX_HEADER_LIST_SIZE, HEADER_LIST),
                    (ENABLE_PUSH, 0),
                )
            )
            + window_update(0, CONNECTION_WINDOW - DEFAULT_WINDOW)
        )

    def data_received(self, data: bytes) -> None:
        if self._stage == _CLOSED:
            return
        view: bytes | bytearray = data
        if self._buf:
            self._buf += data
            view = self._buf
        out: list[bytes] = []
        self._out = out
        try:
            pos = self._frames(view)
        except ConnectionFault as fault:
            self._out = None
            self._fail(fault.code, fault.debug, out)
            return
        except Exception:
            logger.exception("an HTTP/2 connection failed on a bug; it is closed")
            self._out = None
            self._fail(ErrorCode.INTERNAL_ERROR, "internal error", out)
            return
        self._out = None
        if out and self._transport is not None and self._stage != _CLOSED:
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])
        if pos < len(view):
            self._buf = bytearray(view[pos:])
        elif self._buf:
            self._buf = bytearray()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stage = _CLOSED
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._reset_all()
        self._on_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._transport is not None and self._stage != _CLOSED:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._transport is not None and self._stage != _CLOSED:
            self._transport.resume_reading()
        for stream in self._streams.values():
            if not stream.parked:
                self._wake(stream)

    # ----- frames
    def _frames(self, view: bytes | bytearray) -> int:
        n = len(view)
        pos = 0
        if self._stage != _FRAMES:
            pos = self._opening(view)
            if self._stage != _FRAMES:
                return pos
        mv = memoryview(view)
        handlers = self._handlers
        unpack = HEAD.unpack_from
        while n - pos >= 9:
            high, low, kind, flags, sid = unpack(view, pos)
            length = high << 8 | low
            if length > DEFAULT_MAX_FRAME:
                raise ConnectionFault(
                    ErrorCode.FRAME_SIZE_ERROR,
                    f"a frame of {length} bytes is over SETTINGS_MAX_FRAME_SIZE "
                    f"{DEFAULT_MAX_FRAME}: split it",
                )
            end = pos + 9 + length
            if end > n:
                break
            if self._cont_sid and kind != CONTINUATION:
                raise ConnectionFault(
                    ErrorCode.PROTOCOL_ERROR, "a header block is continued by CONTINUATION only"
                )
            if kind <= CONTINUATION:
                try:
                    handlers[kind](mv[pos + 9 : end], flags, sid & STREAM_MASK)
                except StreamFault as fault:
                    self._stream_fault(fault)
                if self._stage == _CLOSED:
                    return end
            pos = end
        return pos

    def _opening(self, view: bytes | bytearray) -> int:
        pos = 0
        if self._stage == _PREFACE:
            have = min(len(view), len(PREFACE))
            if view[:have] != PREFACE[:have]:
                raise ConnectionFault(
                    ErrorCode.PROTOCOL_ERROR,
                    "not the HTTP/2 preface: this port speaks gRPC (HTTP/2 with prior knowledge)",
                )
            if have < len(PREFACE):
                return 0
            pos = len(PREFACE)
            self._stage = _FIRST_SETTINGS
        if len(view) - pos >= 9:
            if view[pos + 3] != SETTINGS or view[pos + 4] & ACK:
                raise ConnectionFault(
                    ErrorCode.PROTOCOL_ERROR, "the preface must be followed by SETTINGS"
                )
            self._stage = _FRAMES
        return pos

    def _data(self, payload: memoryview, flags: int, sid: int) -> None:
        length = len(payload)
        if sid == 0:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        if not self._recv.take(length):
            raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the window")
        increment = self._recv.release(length)
        if increment:
            self._emit(window_update(0, increment))
        stream = self._streams.get(sid)
        if stream is None:
            if sid > self._last_sid:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            return
        if stream.remote_closed:
            raise StreamFault(sid, ErrorCode.STREAM_CLOSED)
        if not stream.recv.take(length):
            raise StreamFault(sid, ErrorCode.FLOW_CONTROL_ERROR)
        if flags & PADDED:
            if length == 0 or payload[0] >= length:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "DATA padding over the frame")
            payload = payload[1 : length - payload[0]]
        end = bool(flags & END_STREAM)
        if end:
            stream.remote_closed = True
        else:
            increment = stream.recv.release(length)
            if increment:
                self._emit(window_update(sid, increment))
            if not payload:
                self._spend(self._control, "empty DATA frames")
        self._on_body(stream, payload, end)

    def _headers(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid == 0:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = 0, len(payload)
        if flags & PADDED:
            start = 1
            end -= payload[0] if end else 1
        if flags & PRIORITY_FLAG:
            start += 5
        if end < start:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "HEADERS padding over the frame")
        if flags & END_HEADERS:
            self._block(sid, bytes(payload[start:end]), bool(flags & END_STREAM))
            return
        self._cont_sid = sid
        self._cont_end = flags & END_STREAM
        self._cont_frames = 0
        self._cont_block = bytearray(payload[start:end])

    def _continuation(self, payload: memoryview, flags: int, sid: int) -> None:
        if self._cont_sid == 0 or sid != self._cont_sid:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        block = self._cont_block
        self._cont_frames += 1
        if len(block) + len(payload) > MAX_BLOCK or self._cont_frames > MAX_CONTINUATIONS:
            raise ConnectionFault(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"a header block over {MAX_BLOCK} bytes or {MAX_CONTINUATIONS} CONTINUATION "
                f"frames: send at most {HEADER_LIST} bytes of metadata",
            )
        block += payload
        if flags & END_HEADERS:
            self._cont_sid = 0
            self._cont_block = bytearray()
            self._block(sid, bytes(block), bool(self._cont_end))

    def _block(self, sid: int, block: bytes, end_stream: bool) -> None:
        stream = self._streams.get(sid)
        if stream is not None:  # trailers from the client: they end its side of the stream
            self._decode(block)
            if not end_stream:
                raise StreamFault(sid, ErrorCode.PROTOCOL_ERROR)
            if stream.remote_closed:
                raise StreamFault(sid, ErrorCode.STREAM_CLOSED)
            stream.remote_closed = True
            self._on_body(stream, _EMPTY, True)
            return
        if not sid & 1:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "clients open odd-numbered streams")
        if sid <= self._last_sid:  # a stream already closed: keep the HPACK state, drop it
            self._decode(block)
            return
        self._last_sid = sid
        if self._goaway_sid is not None or len(self._streams) >= MAX_STREAMS:
            self._decode(block)
            self._spend(self._resets, "streams refused")
            self._emit(rst_stream(sid, ErrorCode.REFUSED_STREAM))
            return
        stream = self._new_stream(sid)
        stream.send_window = self._peer_window
        stream.remote_closed = end_stream
        self._streams[sid] = stream
        self._on_request(stream, block, end_stream)

    def _priority(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid == 0:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise StreamFault(sid, ErrorCode.FRAME_SIZE_ERROR)

    def _rst_stream(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid == 0:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM is 4 bytes")
        self._spend(self._resets, "streams reset (rapid reset)")
        stream = self._streams.pop(sid, None)
        if stream is None:
            if sid > self._last_sid:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            return
        self._drop(stream)
        self._on_reset(stream)
        self._maybe_idle()

    def _settings(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK is empty")
            return
        self._spend(self._control, "SETTINGS frames")
        grew = False
        for key, value in parse_settings(payload):
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
                delta = value - self._peer_window
                self._peer_window = value
                grew = grew or delta > 0
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ConnectionFault(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
            elif key == MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= LARGEST_MAX_FRAME:
                    raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == ENABLE_PUSH and value > 1:
                raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH")
        self._emit(SETTINGS_ACK)
        if grew:
            for stream in list(self._streams.values()):
                if stream.parked or stream.tail is not None:
                    self._flush(stream)

    def _push_promise(self, payload: memoryview, flags: int, sid: int) -> None:
        raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "a client cannot push")

    def _ping(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "PING is 8 bytes")
        if not flags & ACK:
            self._spend(self._control, "PING frames")
            self._emit(ping_ack(payload))

    def _goaway(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid:
            raise ConnectionFault(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise ConnectionFault(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY is at least 8 bytes")
        self._peer_gone = True
        self._maybe_idle()

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

    # ----- helpers
    def _spend(self, budget: Budget, what: str) -> None:
        if not budget.spend(self._loop.time()):
            raise ConnectionFault(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"more than {budget.limit} {what} within {budget.period:g} s: slow down",
            )

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header list of ``block``; ``hpack_version`` moves on when the block changed the
        dynamic table (so a block that did not can be read again from a cache)."""
        table = self._decoder.header_table
        entries = table.dynamic_entries
        first, count, size = entries[0] if entries else None, len(entries), table.maxsize
        try:
            headers = cast(list[tuple[bytes, bytes]], self._decoder.decode(block, raw=True))
            changed = len(entries) != count or table.maxsize != size
            if changed or (entries[0] if entries else None) is not first:
                self.hpack_version += 1
            return headers
        except hpack.OversizedHeaderListError:
            raise ConnectionFault(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"a header list over {HEADER_LIST} bytes: send less metadata",
            ) from None
        except Exception:
            raise ConnectionFault(
                ErrorCode.COMPRESSION_ERROR, "a header block does not decode (HPACK)"
            ) from None

    def _emit(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self._transport is not None and self._stage != _CLOSED:
            self._transport.write(data)

    def _stream_fault(self, fault: StreamFault) -> None:
        self._emit(rst_stream(fault.stream_id, fault.code))
        stream = self._streams.pop(fault.stream_id, None)
        if stream is not None:
            self._drop(stream)
            self._on_reset(stream)
            self._maybe_idle()

    def _drop(self, stream: S) -> None:
        stream.closed = True
        stream.parked.clear()
        stream.tail = None
        self._wake(stream)

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
        if self._stage == _CLOSED or self._transport is None:
            return
        self._stage = _CLOSED
        transport = self._transport
        if out:
            transport.write(b"".join(out))
            out.clear()
        if transport.can_write_eof():  # FIN after the GOAWAY; what still comes is dropped
            transport.resume_reading()
            transport.write_eof()
        else:
            transport.close()
        self._abort_timer = self._loop.call_later(LINGER_S, transport.abort)

    def _fail(self, code: ErrorCode, debug: str, out: list[bytes] | None = None) -> None:
        """A connection error: GOAWAY, every call reset, the connection closed."""
        if self._stage == _CLOSED:
            return
        out = out if out is not None else []
        out.append(goaway(self._last_sid, code, debug.encode()))
        self._close(out)
        self._reset_all()

    def drain(self) -> None:
        """GOAWAY with the last stream id: later streams are refused; close once idle."""
        if self._stage != _FRAMES:
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

    # ----- sending
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
        elif not self._write_paused:
            self._wake(stream)

    def _drain_parked(self) -> None:
        queue = self._parked
        for _ in range(len(queue)):
            if self._send_window <= 0:
                return
            stream = queue.popleft()
            stream.queued = False
            if not stream.closed:
                self._flush(stream)

    def _finish(self, stream: S) -> None:
        stream.closed = True
        stream.tail = None
        self._streams.pop(stream.stream_id, None)
        self._wake(stream)
        self._on_closed(stream)
        self._maybe_idle()
