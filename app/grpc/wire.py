"""gRPC over HTTP/2 on the wire (gRPC's PROTOCOL-HTTP2.md): the call's types and encodings.

``transport`` re-exports the public names (``Status``, ``RpcError``, ``Call``, ``Method``).

- A request's headers (``parse_request``): ``:method`` must be POST (else HTTP 405),
  ``content-type`` must be ``application/grpc`` or start with ``application/grpc+`` or
  ``application/grpc;`` (else HTTP 415, as grpc answers), ``grpc-timeout`` is 1 to 8 digits and
  a unit (H M S m u n; anything else: INVALID_ARGUMENT), ``grpc-encoding`` is kept for the
  message's compressed flag. A header list that is malformed for HTTP/2 (RFC 9113 section
  8.2.1: an empty name, a name with a character other than lower-case letters, digits and
  ``!#$%&'*+-.^_`|~``; a value with NUL, CR or LF or starting or ending with a space or tab; a
  connection-specific name, ``te`` other than ``trailers``; an unknown, repeated or late
  pseudo-header, no ``:path``) resets the stream with PROTOCOL_ERROR. Metadata keeps every
  other header, names as sent; a repeated name keeps its last value; ``-bin`` values are
  base64-decoded strictly (``unbase64``: the standard alphabet only, padding optional; a value
  that does not decode answers INVALID_ARGUMENT).
- A message is a 5-byte prefix (compressed flag, 4-byte big-endian length) and its bytes. A
  compressed flag of 1 with ``grpc-encoding: gzip`` is inflated by ``inflate``, never past the
  message limit (over it: RESOURCE_EXHAUSTED; not gzip: INVALID_ARGUMENT).
- Answers: ``RESPONSE_HEAD`` (``:status 200`` indexed, ``content-type: application/grpc``,
  ``grpc-accept-encoding: identity,gzip``) is a constant block; ``status_block`` encodes
  ``grpc-status``, ``grpc-message`` (percent-encoded by ``percent_encode``: UTF-8, every byte
  outside 0x20-0x7E and ``%`` itself as ``%XX``) and the call's trailers. A trailer name must be
  lower-case ``[0-9a-z_.-]`` and not start with ``grpc-``; a value must be printable ASCII, or
  any text for a ``-bin`` name (sent as base64 of its UTF-8): else ``ValueError`` (the call then
  answers INTERNAL).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import quote

from app.grpc.http2 import STATUS_200, hpack_literal


class Status(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """Raised by ``Method.admit`` or a handler: the call answers ``status`` and ``details``."""

    def __init__(
        self, status: Status, details: str, trailers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.details = details
        self.trailers = trailers


class Call:
    """One call as its handler sees it."""

    __slots__ = (
        "_time", "deadline", "ended", "metadata", "method", "opened", "peer", "trailers"
    )  # fmt: skip

    def __init__(
        self,
        method: str,
        metadata: dict[bytes, bytes],
        peer: str,
        deadline: float | None,
        time: Callable[[], float],
    ) -> None:
        self.method = method
        self.metadata = metadata
        self.peer = peer
        self.deadline = deadline
        self.trailers: list[tuple[str, str]] = []
        self.ended: Status | None = None
        self._time = time
        self.opened = perf_counter()  # when its headers were read (for request durations)

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline (never below 0), None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self._time())


@dataclass(slots=True, frozen=True)
class Method:
    """One method: ``unary`` or ``stream`` (exactly one), and optionally ``admit`` and
    ``unfinished``: told, once, of a call that ``admit`` let through but whose handler never
    ran, with the status it ended with (the client cancelled it or its deadline passed while
    its message was arriving; its message was too large, compressed oddly, or not one; it did
    not arrive within the header timeout: DEADLINE_EXCEEDED; the server began stopping first:
    UNAVAILABLE), so that every call can be counted however it ends."""

    admit: Callable[[Call], None] | None = None
    unary: Callable[[Call, bytes], Awaitable[bytes]] | None = None
    stream: Callable[[Call, bytes], AsyncIterator[bytes]] | None = None
    unfinished: Callable[[Call, Status], None] | None = None


RESPONSE_HEAD = (
    STATUS_200
    + hpack_literal(b"content-type", b"application/grpc")
    + hpack_literal(b"grpc-accept-encoding", b"identity,gzip")
)
_STATUS: dict[int, bytes] = {
    status: hpack_literal(b"grpc-status", b"%d" % status) for status in Status
}
OK_TRAILERS = _STATUS[Status.OK]
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord("%"))
_NAME = re.compile(r"[0-9a-z_.\-]+")


def percent_encode(text: str) -> bytes:
    """``grpc-message``'s encoding: UTF-8, bytes outside 0x20-0x7E and ``%`` as ``%XX``."""
    return quote(text.encode("utf-8"), safe=_SAFE).encode("ascii")


def status_block(status: int, details: str, trailers: Iterable[tuple[str, str]]) -> bytes:
    """``grpc-status``, ``grpc-message`` (when ``details``) and ``trailers``, HPACK-encoded."""
    block = _STATUS.get(status) or hpack_literal(b"grpc-status", b"%d" % status)
    if details:
        block += hpack_literal(b"grpc-message", percent_encode(details))
    for name, value in trailers:
        block += hpack_literal(*_trailer(name, value))
    return block


def _trailer(name: str, value: str) -> tuple[bytes, bytes]:
    if not _NAME.fullmatch(name) or name.startswith("grpc-"):
        raise ValueError(
            f"trailer name {name!r} is not gRPC metadata: use lower-case [0-9a-z_.-], "
            "not starting with grpc-"
        )
    if name.endswith("-bin"):
        return name.encode(), base64.b64encode(value.encode("utf-8")).rstrip(b"=")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(
            f"trailer {name!r} has a value that is not printable ASCII: "
            "send it under a name ending in -bin"
        )
    return name.encode(), value.encode()


_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6}
_UNITS[ord("n")] = 1e-9


def parse_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` in seconds: 1 to 8 ASCII digits and a unit; None when malformed."""
    if not 2 <= len(value) <= 9:
        return None
    unit = _UNITS.get(value[-1])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def inflate(data: bytes, limit: int) -> bytes:
    """A gzip message, inflated to at most ``limit`` bytes: OverflowError past it, ValueError
    when ``data`` is not one whole gzip member."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise ValueError(f"the message does not inflate as gzip ({error})") from None
    if len(out) > limit:
        raise OverflowError(f"the message inflates past {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ValueError("the message is not one whole gzip member")
    return out


# What ``parse_request`` finds wrong (``Request.problem``).
FINE, MALFORMED, NOT_POST, NOT_GRPC, BAD_TIMEOUT, BAD_BINARY = range(6)
_PSEUDO = frozenset((b":method", b":path", b":scheme", b":authority"))
_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding"))
_HOP |= {b"upgrade"}
# A name's characters (RFC 9110's tchar, lower-case letters only: RFC 9113 section 8.2.1).
_TOKEN = bytes(sorted(set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")))
# A value must hold no NUL, CR or LF and neither start nor end with a space or a tab.
_BAD_VALUE = re.compile(rb"[\0\r\n]|\A[ \t]|[ \t]\Z").search


def _bad_name(name: bytes) -> bool:
    """Empty, or a character outside ``_TOKEN`` (upper case, space, controls, non-ASCII)."""
    return not name or bool(name.translate(None, _TOKEN))


def unbase64(value: bytes) -> bytes:
    """A ``-bin`` value: strict base64 (only its alphabet; the padding may be left out).
    ``binascii.Error`` when it does not decode."""
    return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)


class Request:
    """A request's header list, read once (and kept by ``dispatch`` for repeated blocks)."""

    __slots__ = ("encoding", "metadata", "path", "problem", "timeout")

    def __init__(self, problem: int, path: str = "") -> None:
        self.problem = problem
        self.path = path
        self.metadata: dict[bytes, bytes] = {}
        self.timeout: float | None = None
        self.encoding: bytes | None = None


def parse_request(headers: list[tuple[bytes, bytes]]) -> Request:
    pseudo: dict[bytes, bytes] = {}
    metadata: dict[bytes, bytes] = {}
    for name, value in headers:
        if value and _BAD_VALUE(value):
            return Request(MALFORMED)
        if name[:1] == b":":
            if metadata or name not in _PSEUDO or name in pseudo:
                return Request(MALFORMED)
            pseudo[name] = value
            continue
        if _bad_name(name) or name in _HOP or (name == b"te" and value != b"trailers"):
            return Request(MALFORMED)
        if name.endswith(b"-bin"):
            try:
                value = unbase64(value)
            except binascii.Error:
                return Request(BAD_BINARY, name.decode("latin-1"))
        metadata[name] = value
    path = pseudo.get(b":path")
    if not path:
        return Request(MALFORMED)
    if pseudo.get(b":method") != b"POST":
        return Request(NOT_POST)
    kind = metadata.get(b"content-type", b"")
    if kind[:16] != b"application/grpc" or kind[16:17] not in (b"", b"+", b";"):
        return Request(NOT_GRPC)
    request = Request(FINE, path.decode("latin-1"))
    request.metadata = metadata
    request.encoding = metadata.get(b"grpc-encoding")
    raw = metadata.get(b"grpc-timeout")
    if raw is not None:
        request.timeout = parse_timeout(raw)
        if request.timeout is None:
            request.problem = BAD_TIMEOUT
    return request
