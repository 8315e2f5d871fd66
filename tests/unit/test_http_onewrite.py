"""One write per response: uvicorn's real protocol code, on a transport that records writes."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from uvicorn.server import ServerState

from app.http.onewrite import HeldHeadersTransport, OneWriteHttpProtocol
from tests.support.loop import until
from tests.support.transport import Recorder, body_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def connect() -> tuple[OneWriteHttpProtocol, Recorder]:
    config = uvicorn.Config(body_app, lifespan="off", server_header=False, date_header=False)
    protocol = OneWriteHttpProtocol(config=config, server_state=ServerState(), app_state={})
    socket = Recorder()
    protocol.connection_made(socket)
    return protocol, socket


async def test_an_answer_leaves_in_one_write() -> None:
    protocol, socket = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await until(lambda: bool(socket.writes))
    assert socket.writes == [
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{"ok":1}'
    ]


async def test_keep_alive_answers_each_leave_in_one_write() -> None:
    protocol, socket = connect()
    for _ in range(3):
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        count = len(socket.writes)
        await until(lambda: len(socket.writes) > count)  # noqa: B023 - read at once
    assert len(socket.writes) == 3
    assert all(w.endswith(b'{"ok":1}') for w in socket.writes)


async def test_headers_with_no_body_after_them_are_still_sent() -> None:
    protocol, socket = connect()
    protocol.data_received(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
    await until(lambda: bool(socket.writes))
    assert socket.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert socket.writes[0].endswith(b"\r\n\r\n")


async def test_a_streamed_body_keeps_its_order() -> None:
    protocol, socket = connect()
    protocol.data_received(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    await until(lambda: b"".join(socket.writes).endswith(b"0\r\n\r\n"))
    sent = b"".join(socket.writes)
    head, _, chunks = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert chunks == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"


async def test_close_sends_a_held_block_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    socket = Recorder()
    transport = HeldHeadersTransport(socket, loop)
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert socket.writes == []
    transport.close()
    assert socket.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert socket.closed
    other = Recorder()
    aborted = HeldHeadersTransport(other, loop)
    aborted.write(b"HTTP/1.1 200 OK\r\n\r\n")
    aborted.abort()
    await asyncio.sleep(0)  # the pass that would have sent it
    assert other.writes == []
    assert other.closed


async def test_other_writes_pass_straight_through_and_held_bytes_count_as_buffered() -> None:
    socket = Recorder()
    transport = HeldHeadersTransport(socket, asyncio.get_running_loop())
    transport.write(b"partial body")
    assert socket.writes == [b"partial body"]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert socket.writes == [b"partial body", b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert transport.get_write_buffer_size() == 0
