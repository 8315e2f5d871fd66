"""gRPC calls on an HTTP/2 connection: from a stream's headers to its handler (``answers``
runs the handler and answers).

A call, in order:

1. The header list is read by ``wire.parse_request``. A block that did not change the HPACK
   dynamic table reads the same until the table changes, so its reading is kept per
   connection (at most ``CACHED`` blocks; a block that changes the table empties the cache).
   A malformed list resets the stream (PROTOCOL_ERROR); a method other than POST answers
   HTTP 405 and a content-type other than gRPC HTTP 415 (one HEADERS frame with END_STREAM);
   a bad ``grpc-timeout`` or ``-bin`` value answers INVALID_ARGUMENT; an unknown ``:path``
   answers UNIMPLEMENTED naming it.
2. ``grpc-timeout`` sets the deadline (``answers``). ``Method.admit`` runs at once: its
   ``RpcError`` answers with a trailers-only response before any DATA is read (another
   exception: UNKNOWN, logged once).
3. The message is cut from DATA. A length prefix over ``max_message_bytes`` answers
   RESOURCE_EXHAUSTED at once (nothing of it is buffered); so does one that would take the
   declared lengths of the messages the connection is reading past ``buffer_bound`` =
   max(``BUFFERED``, 4 x ``max_message_bytes``): the memory a connection holds in unfinished
   messages stays under it (a message that arrives whole in one DATA frame is not buffered and
   not counted), and what the client sends stops no other call (no window is withheld). A
   compressed flag other than 0 or 1 answers INVALID_ARGUMENT; a compressed message without
   ``grpc-encoding: gzip`` UNIMPLEMENTED; gzip inflating past the limit RESOURCE_EXHAUSTED,
   gzip that does not inflate INVALID_ARGUMENT. A message that arrives whole in one DATA frame
   is taken without copying it twice.
4. The handler starts (a task) when its one message is complete. A second message (as soon as
   its prefix arrives), none, or a stream ending inside a message answer INVALID_ARGUMENT (a
   running handler is cancelled with ``Call.ended`` = CANCELLED).
5. The message must be whole within ``header_timeout_s`` of the call's HEADERS, else
   DEADLINE_EXCEEDED (``answers``' body timeout; ``Method.unfinished`` is told). Calls whose
   message is whole when the chunk with their HEADERS has been read never start that timer.

Per connection: the preface and the first complete HEADERS must arrive within
``header_timeout_s``, else ``on_refused("header_timeout")`` and the connection is closed
(GOAWAY NO_ERROR); a connection beyond ``max_connections``, or while the server stops, is
closed at once and ``on_refused("connections")`` called. ``drain`` (the server stopping)
answers UNAVAILABLE at once the calls whose handler has not started (their message is still
arriving), so that only running handlers are waited for.
"""

from __future__ import annotations

import asyncio
import logging

from app.errors import shown
from app.grpc.answers import FAILED, PREFIX, CallRunner, GrpcStream, Shared
from app.grpc.h2send import CLOSED
from app.grpc.http2 import EMPTY, ErrorCode, StreamFault, hpack_literal
from app.grpc.wire import (
    BAD_BINARY,
    BAD_TIMEOUT,
    MALFORMED,
    NOT_GRPC,
    NOT_POST,
    Call,
    Request,
    RpcError,
    Status,
    inflate,
    parse_request,
)

logger = logging.getLogger("housing.grpc")

CACHED = 32
BUFFERED = 16 << 20  # the least bound on a connection's unfinished messages, in bytes
_HTTP_STATUS = {
    NOT_POST: hpack_literal(b":status", b"405"),
    NOT_GRPC: hpack_literal(b":status", b"415"),
}


class GrpcConnection(CallRunner):
    def __init__(self, shared: Shared, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(shared, loop)
        self._max_message = shared.max_message
        self._peer = "unknown"
        self._cache: dict[bytes, tuple[int, Request]] = {}
        self._header_timer: asyncio.TimerHandle | None = None
        self._accepted = False
        self.buffer_bound = max(BUFFERED, 4 * shared.max_message)
        self._fresh: list[GrpcStream] = []  # calls opened in this chunk, message not whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        shared = self._shared
        if shared.stopping or len(shared.connections) >= shared.max_connections:
            self._stage = CLOSED
            transport.close()
            shared.refused("connections")
            return
        self._accepted = True
        shared.connections.add(self)
        self._peer = _peer(transport.get_extra_info("peername"))
        self._header_timer = self._loop.call_later(shared.header_timeout, self._header_expired)
        super().connection_made(transport)

    def _header_expired(self) -> None:
        self._header_timer = None
        self._shared.refused("header_timeout")
        self._fail(ErrorCode.NO_ERROR, "no request within the header timeout")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        fresh = self._fresh
        if fresh:  # calls whose message did not come whole with their HEADERS: time them
            for stream in fresh:
                if not (stream.started or stream.answered or stream.closed):
                    stream.waiting = True
                    self._late.add(stream)
            fresh.clear()

    def drain(self) -> None:
        super().drain()
        for stream in list(self._streams.values()):
            if not stream.started and not stream.answered:
                self._end(stream, Status.UNAVAILABLE, "the server is stopping and this call's "
                          "message had not arrived: retry on another connection")  # fmt: skip

    def _on_lost(self) -> None:
        self._late.clear()
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._accepted:
            self._accepted = False
            self._shared.connections.discard(self)
            self._shared.check()

    def _new_stream(self, stream_id: int) -> GrpcStream:
        self._shared.in_flight += 1
        return GrpcStream(stream_id)

    def _on_request(self, stream: GrpcStream, block: bytes, end_stream: bool) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        cache = self._cache
        version = self.hpack_version
        hit = cache.get(block)
        if hit is not None and hit[0] == version:
            request = hit[1]
        else:
            request = parse_request(self._decode(block))
            if self.hpack_version != version:
                cache.clear()
            else:  # the block did not change the table: it reads the same until the table does
                if len(cache) >= CACHED:
                    cache.clear()
                cache[block] = (version, request)
        loop = self._loop
        path = request.path
        call = Call(path, request.metadata.copy(), self._peer, None, loop.time)
        stream.call = call
        problem = request.problem
        if problem:
            if problem == MALFORMED:
                raise StreamFault(stream.stream_id, ErrorCode.PROTOCOL_ERROR)
            if problem in _HTTP_STATUS:
                self._http_error(stream, _HTTP_STATUS[problem])
            elif problem == BAD_TIMEOUT:
                self._invalid(stream, "malformed grpc-timeout: send 1 to 8 digits and a unit "
                              "(H, M, S, m, u or n)")  # fmt: skip
            elif problem == BAD_BINARY:  # ``path`` names the metadata here
                self._invalid(stream, f"the binary (-bin) metadata {shown(path)} is not base64: "
                              "such values are sent in base64")  # fmt: skip
            return
        method = self._shared.methods.get(path)
        if method is None:
            self._end(stream, Status.UNIMPLEMENTED, f"Method not found: {shown(path)}")
            return
        stream.method = method
        stream.encoding = request.encoding
        if request.timeout is not None:
            call.deadline = loop.time() + request.timeout
            stream.timer = loop.call_at(call.deadline, self._expire, stream)
        if method.admit is not None:
            try:
                method.admit(call)
            except RpcError as error:
                self._end(stream, error.status, error.details, error.trailers)
                return
            except Exception:
                logger.exception("admitting a call to %s failed", path)
                self._end(stream, Status.UNKNOWN, FAILED)
                return
        stream.admitted = True
        if end_stream:
            self._on_body(stream, EMPTY, True)
        else:
            self._fresh.append(stream)

    def _on_body(self, stream: GrpcStream, chunk: memoryview, end_stream: bool) -> None:
        if stream.answered:
            return
        n = len(chunk)
        if n >= 5 and stream.need < 0 and not stream.count and not stream.buf:
            flag, length = PREFIX.unpack_from(chunk)
            if length == n - 5 and not flag and length <= self._max_message:
                stream.count = 1
                self._start(stream, bytes(chunk[5:]))
                if end_stream:
                    self._check_end(stream)
                return
        if n and not self._deframe(stream, chunk):
            return
        if end_stream:
            self._check_end(stream)

    def _check_end(self, stream: GrpcStream) -> None:
        if stream.answered:
            return
        if stream.need >= 0 or stream.buf:
            self._invalid(stream, "the request ended inside a message: send the whole message")
        elif stream.count == 0:
            self._invalid(stream, "a call takes exactly one message, got none")

    def _deframe(self, stream: GrpcStream, chunk: memoryview) -> bool:
        """Reads ``chunk`` into the stream's message; False once the call was answered."""
        buf = stream.buf
        pos, n = 0, len(chunk)
        while pos < n:
            if stream.need < 0:
                take = min(5 - len(buf), n - pos)
                buf += chunk[pos : pos + take]
                pos += take
                if len(buf) < 5:
                    return True
                flag, length = PREFIX.unpack_from(buf)
                del buf[:]
                if length > self._max_message:
                    self._end(stream, Status.RESOURCE_EXHAUSTED, f"a message of {length} bytes "
                              f"is over the limit of {self._max_message}: send less")  # fmt: skip
                    return False
                if flag > 1:
                    self._invalid(stream, "a message's compressed flag is 0 or 1")
                    return False
                if stream.count:
                    self._invalid(stream, "a call takes exactly one message, got more")
                    return False
                if length > self.buffer_bound - self._buffered:
                    self._end(stream, Status.RESOURCE_EXHAUSTED, f"a message of {length} bytes "
                              f"while this connection is reading {self._buffered} would pass its "
                              f"bound of {self.buffer_bound}: send fewer large messages at once "
                              "on one connection, or retry")  # fmt: skip
                    return False
                stream.reserved = length
                self._buffered += length
                stream.flag, stream.need = flag, length
            take = min(stream.need - len(buf), n - pos)
            buf += chunk[pos : pos + take]
            pos += take
            if len(buf) < stream.need:
                return True
            message = bytes(buf)
            del buf[:]
            stream.need = -1
            stream.count += 1
            if stream.flag:
                inflated = self._inflate(stream, message)
                if inflated is None:
                    return False
                message = inflated
            self._start(stream, message)
        return True

    def _inflate(self, stream: GrpcStream, message: bytes) -> bytes | None:
        if stream.encoding != b"gzip":
            name = (stream.encoding or b"identity").decode("latin-1")
            self._end(stream, Status.UNIMPLEMENTED, f"a message compressed with {shown(name)}: "
                      "this server inflates gzip only (grpc-accept-encoding)")  # fmt: skip
            return None
        try:
            return inflate(message, self._max_message)
        except OverflowError as error:
            self._end(stream, Status.RESOURCE_EXHAUSTED, f"{error}: send less")
        except ValueError as error:
            self._invalid(stream, str(error))
        return None

    def _invalid(self, stream: GrpcStream, details: str) -> None:
        """INVALID_ARGUMENT; a handler already running is cancelled."""
        call = stream.call
        if stream.task is not None and call is not None and call.ended is None:
            call.ended = Status.CANCELLED
            self._cancel(stream)
        self._end(stream, Status.INVALID_ARGUMENT, details)


def _peer(address: object) -> str:
    """grpcio's ``context.peer()`` form: ipv4:host:port, ipv6:[host]:port, unix:path."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return f"unix:{address}" if address else "unknown"
