"""The receiving side of an HTTP/2 server connection on asyncio (RFC 9113); ``h2send`` holds
the stream table, sending, flow control of what we send, and closing.

Frames are cut from each chunk the transport hands over, through a memoryview; what is left is
less than one frame, so the receive buffer never holds more than 9 + 16,384 bytes besides the
chunk being read. Each frame type has one handler.

Connection errors (GOAWAY with the code, every call reset, close):

- anything but the 24-byte preface, or a first frame that is not SETTINGS: PROTOCOL_ERROR;
- a frame longer than our SETTINGS_MAX_FRAME_SIZE of 16,384: FRAME_SIZE_ERROR, as soon as its
  head arrives (nothing of it is buffered);
- DATA or HEADERS on stream 0, HEADERS on an even stream, DATA, RST_STREAM or WINDOW_UPDATE
  on a stream never opened, PUSH_PROMISE, a header block interrupted by another frame,
  CONTINUATION without HEADERS, padding longer than its frame: PROTOCOL_ERROR;
- a header block over ``MAX_BLOCK`` bytes compressed or over ``MAX_CONTINUATIONS``
  CONTINUATION frames (a CONTINUATION flood), or a header list over ``HEADER_LIST`` bytes once
  decoded (our SETTINGS_MAX_HEADER_LIST_SIZE): ENHANCE_YOUR_CALM; a block that does not decode:
  COMPRESSION_ERROR (the HPACK state is lost with either);
- DATA beyond the connection window: FLOW_CONTROL_ERROR; bad lengths of SETTINGS, PING,
  RST_STREAM, GOAWAY: FRAME_SIZE_ERROR; SETTINGS or PING on a stream: PROTOCOL_ERROR;
- floods: more than ``RESETS`` RST_STREAMs within a second, counting together the streams
  reset by the client (rapid reset, CVE-2023-44487), those we refuse and those we reset for a
  stream error (so frames that each draw an RST_STREAM cannot make us send an unbounded stream
  of them), more than ``CONTROL`` PINGs, SETTINGS or empty DATA frames within a second:
  ENHANCE_YOUR_CALM;
- any other exception (a bug): logged once, INTERNAL_ERROR. Nothing escapes into the loop.

Stream errors (RST_STREAM, the connection goes on): DATA beyond a stream's window
(FLOW_CONTROL_ERROR), DATA or trailers after the client ended the stream (STREAM_CLOSED),
trailers without END_STREAM (PROTOCOL_ERROR), a PRIORITY frame that is not 5 bytes
(FRAME_SIZE_ERROR), a new stream beyond SETTINGS_MAX_CONCURRENT_STREAMS = ``MAX_STREAMS`` or
after our GOAWAY (REFUSED_STREAM; its header block is still decoded to keep the HPACK state).

PRIORITY frames and unknown frame types are ignored; frames on streams already closed are
dropped (their DATA still counts against the connection window, and HEADERS are decoded).

Receive flow control: we advertise a stream window of ``STREAM_WINDOW`` (SETTINGS) and a
connection window of ``CONNECTION_WINDOW`` (a WINDOW_UPDATE right after our SETTINGS), and
give a window back (WINDOW_UPDATE) once half of it has been read: DATA is read at once into a
call's message, and what a connection holds is bounded by ``dispatch`` (each message is at most
``max_message_bytes``, and the unfinished messages of a connection together at most its
``buffer_bound``: a message that would pass it is refused at its length prefix), not by the
windows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import hpack

from app.grpc.h2send import (
    CLOSED,
    CONNECTION_WINDOW,
    FIRST_SETTINGS,
    FRAMES,
    MAX_STREAMS,
    OPENING,
    STREAM_WINDOW,
    H2Streams,
    S,
)
from app.grpc.http2 import (
    ACK,
    CONTINUATION,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    EMPTY,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    HEAD,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_HEADER_LIST_SIZE,
    PADDED,
    PREFACE,
    PRIORITY_FLAG,
    SETTINGS,
    STREAM_MASK,
    ConnectionFault,
    ErrorCode,
    RecvWindow,
    StreamFault,
    ping_ack,
    rst_stream,
    settings_frame,
    window_update,
)

logger = logging.getLogger("housing.grpc")

HEADER_LIST = 16_384
MAX_BLOCK = 2 * HEADER_LIST
MAX_CONTINUATIONS = 64
# What the server says first on every connection: its settings, and a larger connection window.
SERVER_OPENING = settings_frame(
    (
        (MAX_CONCURRENT_STREAMS, MAX_STREAMS),
        (INITIAL_WINDOW_SIZE, STREAM_WINDOW),
        (MAX_HEADER_LIST_SIZE, HEADER_LIST),
        (ENABLE_PUSH, 0),
    )
) + window_update(0, CONNECTION_WINDOW - DEFAULT_WINDOW)


class H2Connection(H2Streams[S]):
    """The frame loop: preface, frames cut from each chunk, one handler per frame type."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._buf = bytearray()
        self._cont_sid = 0
        self._cont_end = 0
        self._cont_frames = 0
        self._cont_block = bytearray()
        self._decoder = hpack.Decoder(max_header_list_size=HEADER_LIST)
        self.hpack_version = 0
        self._recv = RecvWindow(CONNECTION_WINDOW)
        self._handlers = (
            self._data, self._headers, self._priority, self._rst_stream, self._settings,
            self._push_promise, self._ping, self._goaway, self._window_update, self._continuation,
        )  # fmt: skip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(SERVER_OPENING)

    def data_received(self, data: bytes) -> None:
        if self._stage == CLOSED:
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
        if out and self._transport is not None and self._stage != CLOSED:
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])
        if pos < len(view):  # an unfinished frame: kept, copied once
            rest = self._buf[pos:] if view is self._buf else bytearray(memoryview(data)[pos:])
            self._buf = rest
        elif self._buf:
            self._buf = bytearray()

    def _frames(self, view: bytes | bytearray) -> int:
        n = len(view)
        pos = 0
        if self._stage != FRAMES:
            pos = self._opening(view)
            if self._stage != FRAMES:
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
                if self._stage == CLOSED:
                    return end
            pos = end
        return pos

    def _opening(self, view: bytes | bytearray) -> int:
        pos = 0
        if self._stage == OPENING:
            have = min(len(view), len(PREFACE))
            if view[:have] != PREFACE[:have]:
                raise ConnectionFault(
                    ErrorCode.PROTOCOL_ERROR,
                    "not the HTTP/2 preface: this port speaks gRPC (HTTP/2 with prior knowledge)",
                )
            if have < len(PREFACE):
                return 0
            pos = len(PREFACE)
            self._stage = FIRST_SETTINGS
        if len(view) - pos >= 9:
            if view[pos + 3] != SETTINGS or view[pos + 4] & ACK:
                raise ConnectionFault(
                    ErrorCode.PROTOCOL_ERROR, "the preface must be followed by SETTINGS"
                )
            self._stage = FRAMES
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
            self._on_body(stream, EMPTY, True)
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

    def _stream_fault(self, fault: StreamFault) -> None:
        self._spend(self._resets, "stream errors (RST_STREAM)")
        self._emit(rst_stream(fault.stream_id, fault.code))
        stream = self._streams.pop(fault.stream_id, None)
        if stream is not None:
            self._drop(stream)
            self._on_reset(stream)
            self._maybe_idle()
