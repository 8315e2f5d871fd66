"""``app.grpc.transport.GrpcServer`` on a real socket, driven by the stock grpcio client,
``tritonclient.grpc`` and a raw socket for what no well-behaved client sends.

The server runs toy methods in an event loop on a background thread (uvloop, as in
production, and asyncio's own). Nothing waits by sleeping: the tests wait on events and
futures whose timeouts only mean "not yet".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

import grpc
import hpack
import pytest
import tritonclient.grpc as triton
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.grpc import http2
from app.grpc import open_inference_grpc_pb2 as pb
from app.grpc.transport import Call, GrpcServer, Method, RpcError, Status
from tests.support.loop import until

T = TypeVar("T")
WAIT = 30.0  # seconds: "not yet", never a measurement
LIMIT = 1 << 20
BIG = 6 << 20
UNICODE = "naïve café: 100% sûr ✓ ~ \n end"


class Toy:
    """The toy methods and what they saw, readable from the test thread."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.gate: asyncio.Future[None] | None = None
        self.guarded_ran = threading.Event()

    def methods(self) -> dict[str, Method]:
        return {
            "/t.T/Echo": Method(unary=self.echo),
            "/t.T/Fail": Method(unary=self.fail),
            "/t.T/Crash": Method(unary=self.crash),
            "/t.T/Guarded": Method(admit=self.admit, unary=self.guarded),
            "/t.T/Hang": Method(unary=self.hang),
            "/t.T/Big": Method(unary=self.big),
            "/t.T/Gate": Method(unary=self.gated),
            "/t.T/Counted": Method(unary=self.echo, unfinished=self.unfinished),
            "/grpc.health.v1.Health/Watch": Method(stream=self.watch),
            "/inference.GRPCInferenceService/ServerLive": Method(unary=self.live),
        }

    async def echo(self, call: Call, message: bytes) -> bytes:
        call.trailers.append(("echo-peer", call.peer))
        call.trailers.append(("echo-key", call.metadata.get(b"x-key", b"").decode()))
        return message

    async def fail(self, call: Call, message: bytes) -> bytes:
        call.trailers.append(("from-call", "yes"))
        raise RpcError(Status.NOT_FOUND, message.decode(), (("why", "because"),))

    async def crash(self, call: Call, message: bytes) -> bytes:
        raise ValueError("secret internals")

    def admit(self, call: Call) -> None:
        if call.metadata.get(b"x-key") != b"right":
            raise RpcError(Status.UNAUTHENTICATED, "send x-key: right")

    async def guarded(self, call: Call, message: bytes) -> bytes:
        self.guarded_ran.set()
        return b"in"

    async def hang(self, call: Call, message: bytes) -> bytes:
        self.seen.put(("started", call.deadline is not None))
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.seen.put(("ended", call.ended))
            raise
        return b""

    def unfinished(self, call: Call, status: Status) -> None:
        self.seen.put(("unfinished", status))

    async def big(self, call: Call, message: bytes) -> bytes:
        return bytes(range(256)) * (BIG // 256)

    async def gated(self, call: Call, message: bytes) -> bytes:
        self.gate = asyncio.get_running_loop().create_future()
        self.seen.put(("gated", None))
        await self.gate
        return b"through"

    async def watch(self, call: Call, message: bytes) -> AsyncIterator[bytes]:
        serving = health_pb2.HealthCheckResponse.ServingStatus
        try:
            for status in (serving.SERVING, serving.NOT_SERVING, serving.SERVING):
                yield health_pb2.HealthCheckResponse(status=status).SerializeToString()
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.seen.put(("watch ended", call.ended))
            raise

    async def live(self, call: Call, message: bytes) -> bytes:
        return pb.ServerLiveResponse(live=True).SerializeToString()

    def next(self, kind: str) -> Any:
        got, value = self.seen.get(timeout=WAIT)
        assert got == kind
        return value


class Served:
    """A GrpcServer in uvloop on a thread of its own."""

    def __init__(
        self,
        toy: Toy,
        refused: list[str],
        kind: str,
        connections: int = 64,
        header_timeout: float = WAIT,
    ) -> None:
        self.toy = toy
        self.loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = GrpcServer(
            toy.methods(),
            max_message_bytes=LIMIT,
            max_connections=connections,
            header_timeout_s=header_timeout,
            on_refused=refused.append,
        )
        self.port = self.run(self.server.start("127.0.0.1", 0, False))
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def soon(self, function: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(function)

    def settled(self) -> int:
        """``in_flight`` once the loop has had the passes to finish what was cancelled."""

        async def wait() -> int:
            await until(lambda: self.server.in_flight == 0)
            return self.server.in_flight

        return self.run(wait())

    def close(self) -> None:
        async def stop() -> None:
            self.server.begin_stop(0.0)
            await self.server.stopped()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@pytest.fixture
def toy() -> Toy:
    return Toy()


@pytest.fixture
def refused() -> list[str]:
    return []


@pytest.fixture(params=["uvloop", "asyncio"])
def kind(request: pytest.FixtureRequest) -> str:
    """The event loop: uvloop as in production, and asyncio's own."""
    return str(request.param)


@pytest.fixture
def served(toy: Toy, refused: list[str], kind: str) -> Iterator[Served]:
    with Served(toy, refused, kind) as server:
        yield server


@pytest.fixture
def channel(served: Served) -> Iterator[grpc.Channel]:
    options = [("grpc.max_receive_message_length", 16 << 20)]
    with grpc.insecure_channel(served.target, options=options) as channel:
        yield channel


def unary(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


def failure(call: Callable[[], object]) -> Any:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_a_unary_call_answers_with_its_trailers(channel: grpc.Channel) -> None:
    answer, call = unary(channel, "/t.T/Echo").with_call(b"hello", metadata=(("x-key", "k"),))
    assert answer == b"hello"
    trailers = dict(call.trailing_metadata())
    assert trailers["echo-key"] == "k"
    assert trailers["echo-peer"].startswith("ipv4:127.0.0.1:")
    assert call.code() == grpc.StatusCode.OK


def test_an_rpc_error_keeps_its_status_details_and_trailers(channel: grpc.Channel) -> None:
    error = failure(lambda: unary(channel, "/t.T/Fail")(UNICODE.encode()))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == UNICODE
    assert ("from-call", "yes") in error.trailing_metadata()
    assert ("why", "because") in error.trailing_metadata()


def test_a_handler_exception_is_unknown_and_logged_once(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="housing.grpc"):
        error = failure(lambda: unary(channel, "/t.T/Crash")(b"x"))
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert "secret" not in error.details() and "Traceback" not in error.details()
    records = [r for r in caplog.records if r.name == "housing.grpc"]
    assert len(records) == 1 and records[0].exc_info is not None


def test_an_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    error = failure(lambda: unary(channel, "/t.T/Nope")(b"x"))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/t.T/Nope" in error.details()


def test_admit_refuses_before_the_handler_runs(channel: grpc.Channel, toy: Toy) -> None:
    error = failure(lambda: unary(channel, "/t.T/Guarded")(b"x" * 1000))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "send x-key: right"
    assert unary(channel, "/t.T/Guarded")(b"x", metadata=(("x-key", "right"),)) == b"in"
    assert toy.guarded_ran.is_set()


# The two deadline tests wait for their deadline to pass, so they run on production's loop
# only: the timers are the loop's call_later on either, and every other test runs on both.
@pytest.mark.parametrize("kind", ["uvloop"])
def test_a_client_deadline_cancels_the_handler(channel: grpc.Channel, toy: Toy) -> None:
    # A second: far more than the handler needs to start, a short wait for the deadline.
    future = unary(channel, "/t.T/Hang").future(b"x", timeout=1)
    assert toy.next("started") is True
    # The client resets the stream when its deadline passes; the server's own timer (set
    # from grpc-timeout) passes at about the same time: whichever comes first ends the call.
    assert toy.next("ended") in {Status.DEADLINE_EXCEEDED, Status.CANCELLED}
    assert future.exception(WAIT).code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("kind", ["uvloop"])
def test_the_server_ends_a_call_at_its_grpc_timeout(served: Served, toy: Toy) -> None:
    raw = Raw(served.port)
    raw.request(1, "/t.T/Hang", b"x", ("grpc-timeout", "1S"))  # the handler starts first
    assert toy.next("started") is True
    assert toy.next("ended") == Status.DEADLINE_EXCEEDED
    trailers = raw.trailers(1)  # trailers-only: nothing was sent before
    assert trailers[:2] == [(":status", "200"), ("content-type", "application/grpc")]
    assert ("grpc-status", "4") in trailers
    raw.sock.close()
    assert served.settled() == 0


def test_a_client_cancel_cancels_the_handler(
    channel: grpc.Channel, toy: Toy, served: Served
) -> None:
    future = unary(channel, "/t.T/Hang").future(b"x")
    assert toy.next("started") is False
    future.cancel()
    assert toy.next("ended") == Status.CANCELLED
    assert served.settled() == 0


def test_a_message_over_the_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    error = failure(lambda: unary(channel, "/t.T/Echo")(b"x" * (LIMIT + 1)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(LIMIT) in error.details()
    assert unary(channel, "/t.T/Echo")(b"y" * LIMIT) == b"y" * LIMIT


def test_a_6_mib_answer_arrives_whole(channel: grpc.Channel) -> None:
    assert unary(channel, "/t.T/Big")(b"") == bytes(range(256)) * (BIG // 256)


def test_200_concurrent_calls_on_one_channel(channel: grpc.Channel) -> None:
    echo = unary(channel, "/t.T/Echo")
    futures = [echo.future(b"%d" % i) for i in range(200)]
    assert [future.result(WAIT) for future in futures] == [b"%d" % i for i in range(200)]


def test_a_server_stream_stays_open_and_delivers(
    channel: grpc.Channel, toy: Toy, served: Served
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    responses = stub.Watch(health_pb2.HealthCheckRequest(service="housing"))
    serving = health_pb2.HealthCheckResponse.ServingStatus
    got = [next(responses).status for _ in range(3)]
    assert got == [serving.SERVING, serving.NOT_SERVING, serving.SERVING]
    responses.cancel()
    assert toy.next("watch ended") == Status.CANCELLED
    assert served.settled() == 0


def test_tritonclient_sees_a_live_server(served: Served) -> None:
    client = triton.InferenceServerClient(url=served.target)
    try:
        assert client.is_server_live() is True
    finally:
        client.close()


def test_begin_stop_finishes_calls_in_flight_and_refuses_new_ones(served: Served, toy: Toy) -> None:
    raw = Raw(served.port)
    raw.request(1, "/t.T/Gate", b"x")
    assert toy.next("gated") is None
    with grpc.insecure_channel(served.target) as channel:
        assert unary(channel, "/t.T/Echo")(b"before") == b"before"
        stopping = asyncio.run_coroutine_threadsafe(stop(served, grace=WAIT), served.loop)
        assert raw.goaway() == (1, http2.ErrorCode.NO_ERROR)
        raw.request(3, "/t.T/Echo", b"late")
        assert raw.until(http2.RST_STREAM) == (3, http2.ErrorCode.REFUSED_STREAM.to_bytes(4))
        error = failure(lambda: unary(channel, "/t.T/Echo")(b"after", timeout=WAIT))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        served.soon(lambda: toy.gate.set_result(None) if toy.gate else None)
        assert raw.until(http2.DATA)[1][5:] == b"through"
        # Read to the server's close, then close: the stop need not wait out the linger.
        assert raw.closed()
        stopping.result(WAIT)
    assert served.server.in_flight == 0


def test_begin_stop_cancels_the_calls_that_outlive_the_grace(served: Served, toy: Toy) -> None:
    with grpc.insecure_channel(served.target) as channel:
        future = unary(channel, "/t.T/Hang").future(b"x")
        assert toy.next("started") is False
        served.run(stop(served, grace=0.0))
        assert toy.next("ended") == Status.CANCELLED
        assert future.exception(WAIT).code() == grpc.StatusCode.UNAVAILABLE
    assert served.server.in_flight == 0


def test_begin_stop_answers_calls_whose_message_is_still_arriving(served: Served, toy: Toy) -> None:
    raw = Raw(served.port)
    raw.send(raw.headers(1, "/t.T/Counted") + http2.frame(http2.DATA, 0, 1, b"\0\0\0"))
    raw.send(http2.frame(http2.PING, 0, 0, b"in order"))
    assert raw.until(http2.PING) == (0, b"in order")  # the server has read the call
    stopping = asyncio.run_coroutine_threadsafe(stop(served, grace=WAIT), served.loop)
    assert raw.goaway() == (1, http2.ErrorCode.NO_ERROR)
    assert ("grpc-status", "14") in raw.trailers(1)  # at once, not after the grace
    assert toy.next("unfinished") == Status.UNAVAILABLE
    assert raw.closed()  # before the stop ends: it need not wait out the linger
    stopping.result(WAIT)
    assert served.server.in_flight == 0


async def stop(served: Served, grace: float) -> None:
    served.server.begin_stop(grace)
    await served.server.stopped()


def test_connections_beyond_the_limit_are_refused(toy: Toy, refused: list[str], kind: str) -> None:
    with Served(toy, refused, kind, connections=1) as served:
        first = Raw(served.port)
        first.request(1, "/t.T/Echo", b"one")
        assert first.until(http2.DATA)[1][5:] == b"one"
        second = Raw(served.port)
        assert second.closed()
        assert refused == ["connections"]
        first.sock.close()


def test_a_connection_without_a_request_in_time_is_closed(
    toy: Toy, refused: list[str], kind: str
) -> None:
    with Served(toy, refused, kind, header_timeout=0.1) as served:
        raw = Raw(served.port)
        assert raw.closed()
        assert refused == ["header_timeout"]


def test_a_call_whose_message_stops_arriving_ends_at_the_header_timeout(
    toy: Toy, refused: list[str], kind: str
) -> None:
    with Served(toy, refused, kind, header_timeout=1.0) as served:
        raw = Raw(served.port, preface=False)  # all at once: the connection's own timer stops
        three = http2.frame(http2.DATA, 0, 1, b"\0\0\0")  # 3 bytes of a message, then silence
        raw.send(OPENING + raw.headers(1, "/t.T/Counted") + three)
        trailers = dict(raw.trailers(1))
        assert trailers["grpc-status"] == "4"
        assert "HOUSING_HEADER_TIMEOUT_S=1 s" in unquote(trailers["grpc-message"])
        assert toy.next("unfinished") == Status.DEADLINE_EXCEEDED
        raw.request(3, "/t.T/Echo", b"still open")  # the connection goes on
        assert raw.until(http2.DATA) == (3, (10).to_bytes(5) + b"still open")
        assert refused == []
        raw.sock.close()
        assert served.settled() == 0


# ----- a raw HTTP/2 client for hostile input


class Raw:
    def __init__(self, port: int, preface: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.encoder = hpack.Encoder()
        self.buffer = b""
        if preface:
            self.send(http2.PREFACE + http2.settings_frame(()))

    def send(self, data: bytes) -> None:
        # The server may close first: what it said is still read by frames().
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def headers(
        self, stream_id: int, path: str, *extra: tuple[str, str], end_stream: bool = False
    ) -> bytes:
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "test"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *extra,
            ]
        )
        return http2.headers_frames(stream_id, block, end_stream, 16_384)

    def request(self, stream_id: int, path: str, message: bytes, *extra: tuple[str, str]) -> None:
        body = len(message).to_bytes(5) + message
        self.send(
            self.headers(stream_id, path, *extra)
            + http2.frame(http2.DATA, http2.END_STREAM, stream_id, body)
        )

    def frames(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Frames as they arrive, until the server closes the connection."""
        while True:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3])
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream_id = int.from_bytes(self.buffer[5:9]) & http2.STREAM_MASK
                payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
                yield kind, flags, stream_id, payload
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return
            self.buffer += data

    def until(self, kind: int) -> tuple[int, bytes]:
        for got, _, stream_id, payload in self.frames():
            if got == kind:
                return stream_id, payload
        raise AssertionError(f"the connection closed before a frame of type {kind}")

    def trailers(self, stream_id: int) -> list[tuple[str, str]]:
        """The header list that ends ``stream_id`` (our blocks decode without any state)."""
        for kind, flags, got, payload in self.frames():
            if kind == http2.HEADERS and flags & http2.END_STREAM and got == stream_id:
                return [(str(name), str(value)) for name, value in hpack.Decoder().decode(payload)]
        raise AssertionError(f"the connection closed before stream {stream_id} ended")

    def goaway(self) -> tuple[int, int]:
        _, payload = self.until(http2.GOAWAY)
        return int.from_bytes(payload[:4]), int.from_bytes(payload[4:8])

    def closed(self) -> bool:
        """Whether the server closes the connection (False: still open after ``WAIT``)."""
        try:
            for _ in self.frames():
                pass
        except TimeoutError:
            return False
        finally:
            self.sock.close()
        return True


def hostile_then_healthy(served: Served, data: bytes, code: http2.ErrorCode) -> None:
    raw = Raw(served.port, preface=False)
    raw.send(data)
    assert raw.goaway()[1] == code
    assert raw.closed()
    with grpc.insecure_channel(served.target) as channel:
        assert unary(channel, "/t.T/Echo")(b"still here") == b"still here"
    assert served.settled() == 0


OPENING = http2.PREFACE + http2.settings_frame(())


def test_garbage_instead_of_the_preface(served: Served) -> None:
    hostile_then_healthy(
        served, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", http2.ErrorCode.PROTOCOL_ERROR
    )


def test_an_oversized_frame(served: Served) -> None:
    frame = http2.frame_head(16_385, http2.DATA, 0, 1) + b"\0" * 16_385
    hostile_then_healthy(served, OPENING + frame, http2.ErrorCode.FRAME_SIZE_ERROR)


def test_a_header_block_over_the_limit(served: Served) -> None:
    raw = Raw(served.port, preface=False)
    block = raw.encoder.encode(
        [(":method", "POST"), (":path", "/t.T/Echo"), ("x-big", "a" * 20_000)]
    )
    data = OPENING + http2.headers_frames(1, block, False, 16_384)
    raw.sock.close()
    hostile_then_healthy(served, data, http2.ErrorCode.ENHANCE_YOUR_CALM)


def test_a_continuation_flood(served: Served) -> None:
    flood = http2.frame(http2.HEADERS, 0, 1, b"\x82")  # no END_HEADERS
    flood += http2.frame(http2.CONTINUATION, 0, 1, b"") * 10_000
    hostile_then_healthy(served, OPENING + flood, http2.ErrorCode.ENHANCE_YOUR_CALM)


def test_rapid_reset(served: Served, toy: Toy) -> None:
    raw = Raw(served.port, preface=False)
    message = (1).to_bytes(5) + b"x"
    pairs = b"".join(
        raw.headers(stream_id, "/t.T/Hang")
        + http2.frame(http2.DATA, http2.END_STREAM, stream_id, message)
        + http2.rst_stream(stream_id, http2.ErrorCode.CANCEL)
        for stream_id in range(1, 2001, 2)
    )
    raw.sock.close()
    hostile_then_healthy(served, OPENING + pairs, http2.ErrorCode.ENHANCE_YOUR_CALM)


def test_malformed_header_fields_reset_their_stream(served: Served) -> None:
    """RFC 9113 section 8.2.1; the connection goes on."""
    bad = [("", "v"), ("x a", "v"), ("x-é", "v"), ("x(y)", "v"), ("x-a", "a\r\nb"),
           ("x-a", "a\0b"), ("x-a", " lead"), ("x-a", "trail\t"), ("te", "gzip")]  # fmt: skip
    raw = Raw(served.port)
    for i, field in enumerate(bad):
        raw.request(2 * i + 1, "/t.T/Echo", b"x", field)
    resets = {raw.until(http2.RST_STREAM) for _ in bad}
    protocol_error = http2.ErrorCode.PROTOCOL_ERROR.to_bytes(4)
    assert resets == {(2 * i + 1, protocol_error) for i in range(len(bad))}
    raw.request(99, "/t.T/Echo", b"fine", ("x-a", "in side"), ("x-key-bin", "AAE"))
    assert raw.until(http2.DATA) == (99, (4).to_bytes(5) + b"fine")
    raw.sock.close()
    assert served.settled() == 0


def test_a_flood_of_frames_that_draw_stream_errors_is_ended(served: Served) -> None:
    bad_priority = b"".join(http2.frame(http2.PRIORITY, 0, sid, b"") for sid in range(1, 10_000, 2))
    hostile_then_healthy(served, OPENING + bad_priority, http2.ErrorCode.ENHANCE_YOUR_CALM)
