"""Our own gRPC server over HTTP/2 cleartext (h2c, prior knowledge) on asyncio.

The public API: ``Status``, ``RpcError``, ``Call``, ``Method`` (from ``wire``) and
``GrpcServer``. Layers, each with its rules and refusals in its docstring: ``http2`` (the
frame codec and our HPACK encoding), ``h2send`` (a connection's stream table, sending, flow
control of what we send, closing), ``h2conn`` (its frame loop, what it refuses, flood bounds),
``dispatch`` (a call from its headers to its handler), ``answers`` (running the handler, the
answer, deadlines and cancellation), ``wire`` (gRPC's headers, messages and status encoding).
Request headers are decoded with the ``hpack`` package; nothing else outside the
standard library.

``GrpcServer``:

- ``methods`` maps a ``:path`` (``/package.Service/Method``) to a ``Method`` with exactly one
  of ``unary`` or ``stream`` (else ``ValueError`` at construction).
- Bounds, all fixed: ``max_message_bytes`` per message (RESOURCE_EXHAUSTED past it, also after
  gzip), ``max_connections`` (one more is closed at once, ``on_refused("connections")``),
  ``header_timeout_s`` for the preface and first HEADERS of a connection
  (``on_refused("header_timeout")``) and, again, for each call's message to be whole after
  its HEADERS (DEADLINE_EXCEEDED past it), 256 concurrent streams per connection
  (REFUSED_STREAM past it), 16 KiB of headers, 16,384-byte frames, at most 100 settings per
  SETTINGS frame, and the flood budgets of ``h2conn`` (RST_STREAMs both ways, PINGs, SETTINGS,
  empty DATA). The memory a connection holds in unfinished messages is at most
  max(16 MiB, 4 x ``max_message_bytes``) (``dispatch.BUFFERED``; a message that would pass
  it is answered RESOURCE_EXHAUSTED at its length prefix), plus the messages of its running
  handlers and the answers of its open calls.
- ``start`` binds with ``loop.create_server`` (SO_REUSEPORT when ``reuse_port``, so several
  worker processes share the port; an exclusive bind otherwise; port 0 = any, the bound port
  of the first socket is returned). ``OSError`` when it cannot bind.
- ``begin_stop(grace)`` stops accepting now and sends GOAWAY (last stream id) on every
  connection; later streams get RST_STREAM REFUSED_STREAM; calls whose handler has not started
  (their message still arriving) answer UNAVAILABLE at once; a connection closes once its calls
  are done; after ``grace`` seconds the calls left are cancelled (``Call.ended`` = CANCELLED)
  and their connections closed. ``stopped()`` returns once no call and no connection is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.grpc.answers import Shared
from app.grpc.dispatch import GrpcConnection
from app.grpc.wire import Call, Method, RpcError, Status

__all__ = ["Call", "GrpcServer", "Method", "RpcError", "Status"]


class GrpcServer:
    def __init__(
        self,
        methods: dict[str, Method],
        *,
        max_message_bytes: int,
        max_connections: int,
        header_timeout_s: float,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        for path, method in methods.items():
            if (method.unary is None) == (method.stream is None):
                raise ValueError(f"method {path}: set exactly one of unary or stream")
            if not path.startswith("/"):
                raise ValueError(f"method {path!r}: a path is /package.Service/Method")
        if max_message_bytes < 0 or max_connections < 1 or not header_timeout_s > 0:
            raise ValueError(
                "max_message_bytes >= 0, max_connections >= 1 and header_timeout_s > 0, got "
                f"{max_message_bytes}, {max_connections}, {header_timeout_s}"
            )
        self._shared = Shared(
            dict(methods), max_message_bytes, max_connections, header_timeout_s, on_refused
        )
        self._server: asyncio.Server | None = None
        self._force: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, reuse_port: bool) -> int:
        """Binds and listens; returns the bound port (OSError when it cannot bind)."""
        loop = asyncio.get_running_loop()
        shared = self._shared
        shared.done_future(loop)
        self._server = await loop.create_server(
            lambda: GrpcConnection(shared, loop),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def begin_stop(self, grace: float) -> None:
        shared = self._shared
        if shared.stopping:
            return
        shared.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(shared.connections):
            connection.drain()
        loop = asyncio.get_running_loop()
        shared.done_future(loop)
        self._force = loop.call_later(max(grace, 0.0), self._stop_now)
        shared.check()

    def _stop_now(self) -> None:
        self._force = None
        for connection in list(self._shared.connections):
            connection.stop_now()

    async def stopped(self) -> None:
        shared = self._shared
        await asyncio.shield(shared.done_future(asyncio.get_running_loop()))
        if self._force is not None:
            self._force.cancel()
            self._force = None
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def in_flight(self) -> int:
        return self._shared.in_flight
