"""HTTP/2 framing for the gRPC door: the codec, without any connection state (RFC 9113).

``h2send`` (sending, flow control, closing) and ``h2conn`` (the frame loop) run a connection
on top of this module; ``dispatch`` and ``answers`` put gRPC on it.

What is here:

- ``PREFACE``: the 24 bytes every client sends first (h2c with prior knowledge, as every gRPC
  client does on an insecure channel). Anything else is refused by ``h2conn``.
- Frame heads: ``frame_head`` packs the 9-byte head, ``HEAD.unpack_from`` reads it (length as
  two fields, type, flags, stream id with the reserved bit still set: mask it with
  ``STREAM_MASK``). Control frames (``settings_frame``, ``window_update``, ``rst_stream``,
  ``goaway``, ``ping_ack``) are built whole; ``headers_frames`` splits a header block into
  HEADERS + CONTINUATION frames no longer than the peer's SETTINGS_MAX_FRAME_SIZE.
- ``parse_settings``: a SETTINGS payload as (identifier, value) pairs; a payload that is not a
  multiple of 6 bytes raises ``ConnectionFault(FRAME_SIZE_ERROR)``.
- HPACK *encoding* of our own header blocks (RFC 7541): only "literal header field without
  indexing, new name", without Huffman, plus the indexed ``:status 200`` (``STATUS_200``). The
  blocks never touch the dynamic table, so they are stateless bytes that can be computed once.
  Decoding the client's blocks is the ``hpack`` package's job (``h2conn``).
- ``ConnectionFault`` (answered with GOAWAY + close) and ``StreamFault`` (answered with
  RST_STREAM): the two kinds of error RFC 9113 section 5.4 defines, raised by the frame handlers.
- ``Budget``: a count of events per time window, the bound on floods (resets, PINGs, SETTINGS,
  empty frames): past ``limit`` events within ``period`` seconds, ``spend`` says no.
- ``RecvWindow``: the accounting of one receive window: bytes the peer may still send, and
  WINDOW_UPDATE increments once half the window has been consumed. ``take`` says no when the
  peer sends more than it was allowed (a FLOW_CONTROL_ERROR).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS identifiers.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
LARGEST_MAX_FRAME = 2**24 - 1
STREAM_MASK = 0x7FFF_FFFF


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ConnectionFault(Exception):
    """A connection error: GOAWAY with ``code`` and ``debug``, then the connection closes."""

    def __init__(self, code: ErrorCode, debug: str) -> None:
        super().__init__(f"{code.name}: {debug}")
        self.code = code
        self.debug = debug


class StreamFault(Exception):
    """A stream error: RST_STREAM with ``code`` on ``stream_id``; the connection goes on."""

    def __init__(self, stream_id: int, code: ErrorCode) -> None:
        super().__init__(f"stream {stream_id}: {code.name}")
        self.stream_id = stream_id
        self.code = code


# length >> 8, length & 0xFF, type, flags, stream id
HEAD = struct.Struct(">HBBBL")
_PACK_HEAD = HEAD.pack
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")
_U32 = struct.Struct(">L")


def frame_head(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte head of a frame whose payload is ``length`` bytes."""
    return _PACK_HEAD(length >> 8, length & 0xFF, frame_type, flags, stream_id)


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return frame_head(len(payload), frame_type, flags, stream_id) + payload


def settings_frame(pairs: Iterable[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(key, value) for key, value in pairs))


SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def parse_settings(payload: bytes | memoryview) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise ConnectionFault(
            ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS payload is a multiple of 6 bytes"
        )
    return list(_SETTING.iter_unpack(payload))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def ping_ack(payload: bytes | memoryview) -> bytes:
    return frame(PING, ACK, 0, bytes(payload))


def read_u32(payload: bytes | memoryview) -> int:
    """The first 4 bytes of ``payload`` as a 31-bit number (the reserved bit dropped)."""
    return int(_U32.unpack_from(payload)[0]) & STREAM_MASK


def headers_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """``block`` as one HEADERS frame, or HEADERS + CONTINUATION frames of at most
    ``max_frame`` bytes each; END_STREAM on the HEADERS frame when ``end_stream``."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame_head(len(block), HEADERS, flags | END_HEADERS, stream_id) + block
    parts = [frame_head(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    for start in range(max_frame, len(block), max_frame):
        piece = block[start : start + max_frame]
        last = start + max_frame >= len(block)
        parts.append(frame_head(len(piece), CONTINUATION, END_HEADERS if last else 0, stream_id))
        parts.append(piece)
    return b"".join(parts)


def hpack_int(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1), the bits above the prefix 0."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


EMPTY = memoryview(b"")  # a DATA frame's payload when there is none
STATUS_200 = b"\x88"  # indexed field 8 of the static table: ":status: 200"


class Budget:
    """At most ``limit`` events per ``period`` seconds (a fixed window, restarted by the first
    event after it ends)."""

    __slots__ = ("limit", "period", "start", "used")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.start = float("-inf")
        self.used = 0

    def spend(self, now: float) -> bool:
        """Counts one event at ``now``; False once the window holds more than ``limit``."""
        if now - self.start >= self.period:
            self.start = now
            self.used = 0
        self.used += 1
        return self.used <= self.limit


class RecvWindow:
    """One receive window of ``size`` bytes: ``take`` when DATA arrives, ``release`` when it has
    been consumed; ``release`` returns the WINDOW_UPDATE increment to send (0: not yet)."""

    __slots__ = ("available", "pending", "threshold")

    def __init__(self, size: int) -> None:
        self.available = size
        self.pending = 0
        self.threshold = size // 2

    def take(self, length: int) -> bool:
        self.available -= length
        return self.available >= 0

    def release(self, length: int) -> int:
        self.pending += length
        if self.pending < self.threshold:
            return 0
        increment = self.pending
        self.available += increment
        self.pending = 0
        return increment
