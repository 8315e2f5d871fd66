"""The header timeout and the connection bound, on uvicorn's real protocol code and a transport
that records writes (``tests.support.transport``)."""

from __future__ import annotations

import asyncio
import resource

import pytest
import uvicorn
from pydantic import ValidationError
from uvicorn.server import ServerState

from app.http.connections import (
    FD_RESERVE,
    HEADER_TIMEOUT,
    TOO_MANY_CONNECTIONS,
    GuardedHttpProtocol,
    fd_shortfall,
    guarded_protocol,
)
from app.settings import Settings
from tests.support.loop import until
from tests.support.transport import Recorder, body_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Reasons(list[str]):
    """What the metrics would count."""

    def observe_refusal(self, reason: str) -> None:
        self.append(reason)


def protocol_class(reasons: Reasons, **limits: float) -> type[GuardedHttpProtocol]:
    bound = int(limits.get("bound", 2))
    settings = Settings(header_timeout_s=limits.get("timeout", 7.0), max_connections=bound)
    return guarded_protocol(settings, reasons)


def connect(
    cls: type[GuardedHttpProtocol], state: ServerState | None = None
) -> tuple[GuardedHttpProtocol, Recorder]:
    config = uvicorn.Config(body_app, lifespan="off", server_header=False, date_header=False)
    protocol = cls(config=config, server_state=state or ServerState(), app_state={})
    socket = Recorder()
    protocol.connection_made(socket)
    return protocol, socket


def due(protocol: GuardedHttpProtocol) -> float | None:
    """When the protocol's header deadline is due (loop time), None when it has none."""
    return protocol.header_deadlines._due.get(protocol)


async def test_headers_sent_a_byte_at_a_time_do_not_restart_the_clock() -> None:
    reasons = Reasons()
    loop = asyncio.get_running_loop()
    opened = loop.time()
    protocol, socket = connect(protocol_class(reasons, timeout=0.05))
    at = due(protocol)
    # Due one timeout after the connection opened (bounds, not a tolerance: a busy machine
    # may take any time between the two readings of the clock).
    assert at is not None and opened + 0.05 <= at <= loop.time() + 0.05
    for byte in b"GET / HTTP/1.1\r\nhost: x":
        protocol.data_received(bytes([byte]))
    assert due(protocol) == at  # the same deadline: bytes do not buy time
    give_up = loop.time() + 5
    while not socket.closed and loop.time() < give_up:
        await asyncio.sleep(0.01)  # "not yet": the deadline has not fired
    assert socket.closed and socket.writes == []  # closed, unanswered
    assert reasons == [HEADER_TIMEOUT] and due(protocol) is None


async def test_the_clock_stops_at_the_headers_and_restarts_after_the_answer() -> None:
    reasons = Reasons()
    protocol, socket = connect(protocol_class(reasons))
    first = due(protocol)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert first is not None and due(protocol) is None
    await until(lambda: bool(socket.writes))  # answered, kept alive: the next headers are due
    again = due(protocol)
    assert again is not None and again >= first
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK") and not socket.closed
    protocol.connection_lost(None)
    assert due(protocol) is None  # a closed connection leaves no deadline behind
    assert reasons == []


async def test_a_request_being_answered_is_never_cut() -> None:
    reasons = Reasons()
    protocol, socket = connect(protocol_class(reasons))
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    protocol.headers_late()  # even were a deadline to fire now
    assert not socket.closed and reasons == []
    await until(lambda: bool(socket.writes))
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK")


async def test_a_connection_over_the_bound_is_answered_503_and_closed() -> None:
    reasons = Reasons()
    cls = protocol_class(reasons, bound=2)
    state = ServerState()
    kept = [connect(cls, state) for _ in range(2)]
    assert len(state.connections) == 2
    refused, socket = connect(cls, state)
    assert socket.closed and len(state.connections) == 2
    head, _, body = b"".join(socket.writes).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"connection: close" in head and b"retry-after: 1" in head
    assert f"content-length: {len(body)}".encode() in head
    assert b"HOUSING_MAX_CONNECTIONS=2" in body and b"Hint:" in body
    refused.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")  # whatever came is dropped
    refused.connection_lost(None)
    assert len(socket.writes) == 1 and reasons == [TOO_MANY_CONNECTIONS]
    kept[0][0].connection_lost(None)  # one closes: the next is served
    served, socket = connect(cls, state)
    served.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await until(lambda: bool(socket.writes))
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK")


def test_the_settings_refuse_a_timeout_or_bound_that_is_not_positive() -> None:
    with pytest.raises(ValidationError, match="header_timeout_s"):
        Settings(header_timeout_s=0)
    with pytest.raises(ValidationError, match="max_connections"):
        Settings(max_connections=0)
    assert Settings().header_timeout_s == 10.0 and Settings().max_connections == 2048


def test_a_bound_above_the_open_file_limit_is_worth_a_warning() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fd_shortfall(1) is None
    if soft != resource.RLIM_INFINITY:
        warning = fd_shortfall(soft)
        assert warning is not None and f"HOUSING_MAX_CONNECTIONS={soft}" in warning
        assert "ulimit -n" in warning
        assert fd_shortfall(soft - FD_RESERVE) is None
