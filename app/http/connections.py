"""HTTP connections: a deadline for a request's headers, and a bound on open connections.

uvicorn has neither: a client that sends its headers one byte a second keeps its connection
(and a file descriptor, and the protocol's buffers) for as long as it likes, and any number of
such clients are kept until the process runs out of file descriptors (issue 26, finding 5).
``GuardedHttpProtocol`` is the server's HTTP protocol (``app.http.onewrite``'s, so still one write
per response) with both, set by ``guarded_protocol(settings, metrics)``. The rules:

* **Header timeout** (``HOUSING_HEADER_TIMEOUT_S``): from the moment a connection opens, and
  from the moment each response on a kept-alive connection is complete, the next request's
  headers must be complete within this many seconds, or the server closes the connection
  without an answer (as uvicorn's keep-alive timeout does: a client may retry on a new
  connection, and nothing of a request has been answered). The clock stops when the headers
  are complete -- a request being answered is never cut by it -- and a slow body is not its
  business. An idle kept-alive connection is closed by the shorter of it and uvicorn's
  keep-alive timeout (5 s). Each close is counted in
  ``housing_rejected_requests_total{reason="header_timeout"}``.
* **Connection bound** (``HOUSING_MAX_CONNECTIONS``): a connection that would be one more than
  this many open HTTP connections of this process is answered ``503`` with
  ``Connection: close`` and ``Retry-After: 1`` and closed at once, before anything of it is
  read (a client whose request was already on its way may see the connection reset instead:
  refused either way), and counted in ``housing_rejected_requests_total{reason="connections"}``.
  Connections already open are served as before, and each one that closes makes room. With
  several workers (``HOUSING_WORKERS``) each process has its own bound, as it has its own
  share of the connections.

Both live in the protocol, so a supervisor's workers -- which run the same server -- behave
alike. The deadlines of all connections share one loop timer (``app.core.timeouts``): arming and
ending one costs a dict insert and a delete per request, not a timer. gRPC's connections are
``app.grpc.transport``'s, with bounds of their own.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any, ClassVar, Protocol

from app.core.timeouts import Timeouts
from app.http.onewrite import OneWriteHttpProtocol
from app.settings import Settings

HEADER_TIMEOUT = "header_timeout"
TOO_MANY_CONNECTIONS = "connections"
# File descriptors left for everything but HTTP connections (gRPC, artifacts, logs, capture).
FD_RESERVE = 64


def refusal_answer(max_connections: int) -> bytes:
    """The whole 503 answer of a connection over the bound."""
    body = (
        f"too many open connections (HOUSING_MAX_CONNECTIONS={max_connections}). Hint: retry "
        "in a second, or reuse kept-alive connections instead of opening new ones.\n"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    return head + body


class Counts(Protocol):
    """Told the reason of each connection closed or refused here (``Metrics`` is one)."""

    def observe_refusal(self, reason: str) -> None: ...


class GuardedHttpProtocol(OneWriteHttpProtocol):
    """uvicorn's protocol with a header timeout and a connection bound (see the module)."""

    max_connections: ClassVar[int] = 2048
    refusal: ClassVar[bytes] = refusal_answer(2048)
    counts: ClassVar[Counts | None] = None
    # Every connection's header deadline, on one loop timer (``guarded_protocol`` sets it).
    header_deadlines: ClassVar[Timeouts[GuardedHttpProtocol]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._refused = True  # never joins ``connections``: uvicorn's shutdown skips it
            transport.write(self.refusal)
            transport.close()
            self._count(TOO_MANY_CONNECTIONS)
            return
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # a refused connection is closed: whatever came is dropped
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive and no pipelined request started: the next one's headers are due.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._arm()

    def _arm(self) -> None:
        deadlines = self.header_deadlines
        deadlines.discard(self)  # re-added last: insertion order is due order (app.core.timeouts)
        deadlines.add(self)

    def _disarm(self) -> None:
        self.header_deadlines.discard(self)

    def headers_late(self) -> None:
        """The header timeout passed (``header_deadlines`` calls it): close, unanswered."""
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not this timer's business
        self._count(HEADER_TIMEOUT)
        self.transport.close()

    def _count(self, reason: str) -> None:
        if self.counts is not None:
            self.counts.observe_refusal(reason)


def guarded_protocol(settings: Settings, counts: Counts | None) -> type[GuardedHttpProtocol]:
    """``GuardedHttpProtocol`` with the settings' limits, for ``uvicorn.Config(http=...)``."""
    attributes = {
        "header_deadlines": Timeouts(settings.header_timeout_s, GuardedHttpProtocol.headers_late),
        "max_connections": settings.max_connections,
        "refusal": refusal_answer(settings.max_connections),
        "counts": counts,
    }
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), attributes)


def fd_shortfall(max_connections: int) -> str | None:
    """A warning when the process may run out of file descriptors before the connection
    bound is reached (the bound then protects nothing), else None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections + FD_RESERVE <= soft:
        return None
    return (
        f"HOUSING_MAX_CONNECTIONS={max_connections} is above what the open-file limit "
        f"({soft}, less {FD_RESERVE} for the rest of the server) allows: connections beyond "
        f"{max(soft - FD_RESERVE, 0)} fail to be accepted. Hint: raise the limit (`ulimit -n`, "
        "the container's nofile) or lower HOUSING_MAX_CONNECTIONS."
    )
