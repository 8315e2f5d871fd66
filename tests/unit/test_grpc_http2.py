"""The gRPC door's HTTP/2 codec and gRPC wire encodings (``app.grpc.http2``, ``app.grpc.wire``),
and a connection's flow-control accounting driven through a fake transport."""

from __future__ import annotations

import asyncio
import gzip
from _collections_abc import dict_values
from collections.abc import Iterator
from urllib.parse import unquote

import hpack
import pytest

from app.grpc import http2
from app.grpc.answers import GrpcStream, Shared
from app.grpc.dispatch import BUFFERED, GrpcConnection
from app.grpc.h2send import CONNECTION_WINDOW, RESETS, SETTINGS_PAIRS, STREAM_WINDOW
from app.grpc.transport import Call, Method, Status
from app.grpc.wire import (
    BAD_BINARY,
    MALFORMED,
    NOT_GRPC,
    NOT_POST,
    RESPONSE_HEAD,
    inflate,
    parse_request,
    parse_timeout,
    percent_encode,
    status_block,
)


def decoded(block: bytes) -> list[tuple[str, str]]:
    decoder = hpack.Decoder()
    headers = [(str(name), str(value)) for name, value in decoder.decode(block)]
    assert len(decoder.header_table.dynamic_entries) == 0  # stateless: nothing indexed
    return headers


def split(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Frames (type, flags, stream id, payload) of ``data``, which holds whole frames."""
    frames, pos = [], 0
    while pos < len(data):
        high, low, kind, flags, stream_id = http2.HEAD.unpack_from(data, pos)
        length = high << 8 | low
        frames.append((kind, flags, stream_id, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    assert pos == len(data)
    return frames


# ----- frame codec


def test_a_frame_head_round_trips() -> None:
    head = http2.frame_head(0xABCDE, http2.HEADERS, http2.END_HEADERS, 0x7FFF_FFFF)
    assert len(head) == 9
    assert head[:3] == bytes.fromhex("0abcde")
    high, low, kind, flags, stream_id = http2.HEAD.unpack_from(head)
    assert (high << 8 | low, kind, flags, stream_id) == (0xABCDE, 1, 4, 0x7FFF_FFFF)


def test_settings_round_trip_and_bad_lengths_are_frame_size_errors() -> None:
    frame = http2.settings_frame([(http2.INITIAL_WINDOW_SIZE, 1 << 20), (http2.ENABLE_PUSH, 0)])
    [(kind, flags, stream_id, payload)] = split(frame)
    assert (kind, flags, stream_id) == (http2.SETTINGS, 0, 0)
    assert http2.parse_settings(payload) == [(4, 1 << 20), (2, 0)]
    with pytest.raises(http2.ConnectionFault) as info:
        http2.parse_settings(payload[:-1])
    assert info.value.code == http2.ErrorCode.FRAME_SIZE_ERROR


def test_control_frames() -> None:
    assert split(http2.window_update(3, 1000)) == [(8, 0, 3, (1000).to_bytes(4))]
    assert split(http2.rst_stream(5, 8)) == [(3, 0, 5, (8).to_bytes(4))]
    goaway = bytes.fromhex("000000070000000b") + b"calm"
    assert split(http2.goaway(7, 11, b"calm")) == [(7, 0, 0, goaway)]
    assert split(http2.ping_ack(b"12345678")) == [(6, 1, 0, b"12345678")]
    assert http2.read_u32(bytes.fromhex("ffffffff")) == 0x7FFF_FFFF


def test_a_long_header_block_is_split_into_continuations() -> None:
    block = bytes(range(256)) * 100
    frames = split(http2.headers_frames(9, block, True, 16_384))
    assert [(kind, flags) for kind, flags, _, _ in frames] == [
        (http2.HEADERS, http2.END_STREAM),
        (http2.CONTINUATION, http2.END_HEADERS),
    ]
    assert b"".join(payload for *_, payload in frames) == block
    assert split(http2.headers_frames(9, b"ab", False, 16_384)) == [(1, 4, 9, b"ab")]


# ----- HPACK encoding of our blocks


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a"), (127, 7, "7f00"), (126, 7, "7e")],
)
def test_hpack_integers_as_rfc_7541_writes_them(value: int, prefix: int, encoded: str) -> None:
    assert http2.hpack_int(value, prefix) == bytes.fromhex(encoded)


def test_the_response_head_decodes() -> None:
    assert decoded(RESPONSE_HEAD) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-accept-encoding", "identity,gzip"),
    ]


def test_a_status_block_decodes_with_its_message_and_trailers() -> None:
    block = status_block(Status.NOT_FOUND, "no ünïcode 100%", [("a", "1"), ("b-bin", "é")])
    headers = decoded(block)
    assert headers[0] == ("grpc-status", "5")
    assert headers[1] == ("grpc-message", "no %C3%BCn%C3%AFcode 100%25")
    assert headers[2] == ("a", "1")
    assert headers[3] == ("b-bin", "w6k")
    assert decoded(status_block(Status.OK, "", ())) == [("grpc-status", "0")]


def test_long_names_and_values_round_trip() -> None:
    name, value = b"x-" + b"n" * 300, b"v" * 40_000
    assert decoded(http2.hpack_literal(name, value))[0] == (name.decode(), value.decode())


@pytest.mark.parametrize(
    ("name", "value"),
    [("Upper", "x"), ("grpc-status", "0"), ("a b", "x"), ("ok", "line\nbreak"), ("ok", "é")],
)
def test_trailers_that_are_not_metadata_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="trailer"):
        status_block(Status.OK, "", [(name, value)])


# ----- gRPC encodings


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain text: ok ~!", b"plain text: ok ~!"),
        ("100%", b"100%25"),
        ("a\nb\tc", b"a%0Ab%09c"),
        ("café ✓", b"caf%C3%A9 %E2%9C%93"),
    ],
)
def test_percent_encoding(text: str, encoded: bytes) -> None:
    assert percent_encode(text) == encoded
    assert unquote(encoded.decode()) == text


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"100m", 0.1), (b"5S", 5.0), (b"1H", 3600.0), (b"2M", 120.0), (b"7u", 7e-6),
     (b"9n", 9e-9), (b"99999999S", 99_999_999.0), (b"0m", 0.0)],
)  # fmt: skip
def test_grpc_timeouts(value: bytes, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "value", [b"", b"m", b"123456789S", b"10x", b"-1S", b"1.5S", b" 1S", b"1_0S", b"+1S", b"S1"]
)
def test_malformed_grpc_timeouts(value: bytes) -> None:
    assert parse_timeout(value) is None


def test_inflate_is_bounded() -> None:
    assert inflate(gzip.compress(b"a" * 1000), 1000) == b"a" * 1000
    with pytest.raises(OverflowError):
        inflate(gzip.compress(b"a" * 1001), 1000)
    with pytest.raises(ValueError, match="gzip"):
        inflate(b"not gzip", 1000)
    with pytest.raises(ValueError, match="whole"):
        inflate(gzip.compress(b"a" * 1000)[:-3], 1000)


def request(*extra: tuple[bytes, bytes], method: bytes = b"POST") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":path", b"/t.T/M"),
        (b"content-type", b"application/grpc+proto"),
        *extra,
    ]


def test_request_headers() -> None:
    parsed = parse_request(request((b"x-key-bin", b"AAEC"), (b"grpc-timeout", b"2S")))
    assert (parsed.problem, parsed.path, parsed.timeout) == (0, "/t.T/M", 2.0)
    assert parsed.metadata[b"x-key-bin"] == b"\x00\x01\x02"
    assert parse_request(request(method=b"GET")).problem == NOT_POST
    not_grpc = request()[:2] + [(b"content-type", b"application/grpcx")]
    assert parse_request(not_grpc).problem == NOT_GRPC
    assert parse_request(request((b"X-Upper", b"v"))).problem == MALFORMED
    assert parse_request(request((b"connection", b"close"))).problem == MALFORMED
    assert parse_request([(b"a", b"b"), *request()]).problem == MALFORMED
    assert parse_request(request()[1:]).problem == NOT_POST
    assert parse_request([(b":method", b"POST")]).problem == MALFORMED


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"", b"v"), (b"x a", b"v"), (b"X-Up", b"v"), (b"x-\xc3\xa9", b"v"), (b"x(y)", b"v"),
     (b"x\0", b"v"), (b"x-a", b"a\r\nb"), (b"x-a", b"a\nb"), (b"x-a", b"a\0b"),
     (b"x-a", b" lead"), (b"x-a", b"trail "), (b"x-a", b"\ttab"), (b":path", b"/t.T/M\r\n")],
)  # fmt: skip
def test_malformed_header_fields(name: bytes, value: bytes) -> None:
    """RFC 9113 section 8.2.1: names are lower-case tokens; values hold no NUL, CR or LF and
    neither start nor end with whitespace."""
    headers = request((name, value)) if name[:1] != b":" else [(name, value), *request()[:1]]
    assert parse_request(headers).problem == MALFORMED


def test_fields_that_are_well_formed() -> None:
    fine = ((b"x-!#$%&'*+-.^_`|~09az", b"in side ok"), (b"x-a", b""), (b"x-b", b"caf\xc3\xa9"))
    parsed = parse_request(request(*fine))
    assert parsed.problem == 0 and parsed.metadata[b"x-b"] == "café".encode()


@pytest.mark.parametrize(
    "value",
    [b"!!!!", b"Q Q=", b"\xc3\xa9AAA", b"AA-_", b"Q", b"QQ=Q", b"AA\tC", b"A===", b"QQ==QQ=="],
)
def test_binary_metadata_is_strict_base64(value: bytes) -> None:
    parsed = parse_request(request((b"x-key-bin", value)))
    assert (parsed.problem, parsed.path) == (BAD_BINARY, "x-key-bin")


@pytest.mark.parametrize(
    ("value", "decoded"), [(b"AAEC", b"\0\1\2"), (b"AAE", b"\0\1"), (b"AAE=", b"\0\1"), (b"", b"")]
)
def test_binary_metadata_padding_is_optional(value: bytes, decoded: bytes) -> None:
    assert parse_request(request((b"x-key-bin", value))).metadata[b"x-key-bin"] == decoded


# ----- flow-control accounting


def test_a_receive_window_asks_for_more_at_half() -> None:
    window = http2.RecvWindow(100)
    assert window.take(49) and window.release(49) == 0
    assert window.take(51) and window.release(1) == 50
    assert window.available == 50
    assert not window.take(51)


def test_a_budget_counts_per_window() -> None:
    budget = http2.Budget(2, 1.0)
    assert budget.spend(10.0) and budget.spend(10.5)
    assert not budget.spend(10.9)
    assert budget.spend(11.0)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5000) if name == "peername" else default

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> list[tuple[int, int, int, bytes]]:
        frames = split(bytes(self.written))
        self.written.clear()
        return frames


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


ANSWER = bytes(range(256)) * 1024  # 256 KiB
REQUEST = [(":method", "POST"), (":path", "/t.T/Big"), ("content-type", "application/grpc")]


def connect(loop: asyncio.AbstractEventLoop) -> tuple[GrpcConnection, FakeTransport]:
    async def big(call: Call, message: bytes) -> bytes:
        return ANSWER

    shared = Shared({"/t.T/Big": Method(unary=big)}, 1 << 20, 10, 30.0, None)
    connection = GrpcConnection(shared, loop)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


def test_the_connection_opens_with_a_large_receive_window(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)
    (_, _, _, settings), (_, _, _, update) = transport.take()
    assert (http2.INITIAL_WINDOW_SIZE, STREAM_WINDOW) in http2.parse_settings(settings)
    assert int.from_bytes(update) == CONNECTION_WINDOW - http2.DEFAULT_WINDOW


def test_an_answer_waits_for_the_peers_windows(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)
    block = hpack.Encoder().encode(REQUEST)
    connection.data_received(
        http2.PREFACE
        + http2.settings_frame([(http2.INITIAL_WINDOW_SIZE, 100_000)])
        + http2.headers_frames(1, block, False, 16_384)
        + http2.frame(http2.DATA, http2.END_STREAM, 1, bytes(5))
    )
    loop.run_until_complete(asyncio.sleep(0))  # the handler's one step
    frames = transport.take()
    data = [payload for kind, _, _, payload in frames if kind == http2.DATA]
    assert all(len(payload) <= 16_384 for payload in data)
    assert sum(map(len, data)) == http2.DEFAULT_WINDOW  # the connection window, not more
    assert frames[-1][0] == http2.DATA
    connection.data_received(http2.window_update(0, 1 << 20))
    data = [payload for kind, _, _, payload in transport.take() if kind == http2.DATA]
    assert sum(map(len, data)) == 100_000 - http2.DEFAULT_WINDOW  # now the stream's window
    connection.data_received(http2.window_update(1, 1 << 20))
    frames = transport.take()
    rest = b"".join(payload for kind, _, _, payload in frames if kind == http2.DATA)
    assert len(rest) == len(ANSWER) + 5 - 100_000
    assert rest.endswith(ANSWER[-1000:])
    kind, flags, _, trailers = frames[-1]
    assert (kind, flags) == (http2.HEADERS, http2.END_HEADERS | http2.END_STREAM)
    assert decoded(trailers) == [("grpc-status", "0")]


def feed(loop: asyncio.AbstractEventLoop, connection: GrpcConnection, data: bytes) -> None:
    """``data`` read by ``connection`` within the running loop, as a transport hands it over."""

    async def read() -> None:
        connection.data_received(data)

    loop.run_until_complete(read())


def test_the_receive_window_is_given_back_as_data_is_read(
    loop: asyncio.AbstractEventLoop,
) -> None:
    connection, transport = connect(loop)
    block = hpack.Encoder().encode(REQUEST)
    message = (1 << 20).to_bytes(5) + bytes(16_379)
    feed(
        loop,
        connection,
        http2.PREFACE
        + http2.settings_frame(())
        + http2.headers_frames(1, block, False, 16_384)
        + http2.frame(http2.DATA, 0, 1, message),
    )
    transport.take()
    feed(loop, connection, http2.frame(http2.DATA, 0, 1, bytes(16_384)) * 31)
    updates = [
        (stream_id, int.from_bytes(payload))
        for kind, _, stream_id, payload in transport.take()
        if kind == http2.WINDOW_UPDATE
    ]
    assert updates == [(1, STREAM_WINDOW // 2)]


def opened(connection: GrpcConnection, transport: FakeTransport) -> None:
    connection.data_received(http2.PREFACE + http2.settings_frame(()))
    transport.take()


def goaway_of(transport: FakeTransport) -> int:
    [payload] = [payload for kind, _, _, payload in transport.take() if kind == http2.GOAWAY]
    assert transport.closed
    return int.from_bytes(payload[4:8])


E = http2.ErrorCode


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (http2.frame(http2.PING, 0, 0, bytes(7)), E.FRAME_SIZE_ERROR),
        (http2.frame(http2.SETTINGS, 0, 1), E.PROTOCOL_ERROR),
        (http2.frame(http2.SETTINGS, http2.ACK, 0, bytes(6)), E.FRAME_SIZE_ERROR),
        (http2.window_update(0, 0), E.PROTOCOL_ERROR),
        (http2.window_update(0, 2**31 - 1), E.FLOW_CONTROL_ERROR),
        (http2.frame(http2.PUSH_PROMISE, 4, 1, bytes(4)), E.PROTOCOL_ERROR),
        (http2.frame(http2.DATA, 0, 0, b"x"), E.PROTOCOL_ERROR),
        (http2.frame(http2.DATA, 0, 7, b"x"), E.PROTOCOL_ERROR),
        (http2.frame(http2.HEADERS, http2.END_HEADERS, 2, b"\x83"), E.PROTOCOL_ERROR),
        (http2.frame(http2.HEADERS, http2.END_HEADERS, 1, b"\xff\x7f"), E.COMPRESSION_ERROR),
        (http2.frame(http2.CONTINUATION, http2.END_HEADERS, 1, b"\x83"), E.PROTOCOL_ERROR),
        (http2.frame(http2.HEADERS, 0, 1, b"\x83") + http2.frame(http2.PING, 0, 0, bytes(8)),
         E.PROTOCOL_ERROR),
        (http2.rst_stream(5, 8), E.PROTOCOL_ERROR),
        (http2.settings_frame([(http2.INITIAL_WINDOW_SIZE, 2**31)]), E.FLOW_CONTROL_ERROR),
        (http2.settings_frame([(http2.MAX_FRAME_SIZE, 100)]), E.PROTOCOL_ERROR),
        (http2.frame(http2.PING, 0, 0, bytes(8)) * 1_001, E.ENHANCE_YOUR_CALM),
        (http2.frame(http2.DATA, http2.PADDED, 1, b"\x05abc"), E.PROTOCOL_ERROR),
        (http2.settings_frame([(http2.ENABLE_PUSH, 0)] * (SETTINGS_PAIRS + 1)),
         E.ENHANCE_YOUR_CALM),
        (http2.settings_frame([(http2.INITIAL_WINDOW_SIZE, 2**31), (http2.INITIAL_WINDOW_SIZE, 1)]),
         E.FLOW_CONTROL_ERROR),
    ],
)  # fmt: skip
def test_malformed_frames_are_connection_errors(
    loop: asyncio.AbstractEventLoop, frames: bytes, code: http2.ErrorCode
) -> None:
    connection, transport = connect(loop)
    opened(connection, transport)
    connection.data_received(frames)
    assert goaway_of(transport) == code


def test_the_first_frame_must_be_settings(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)
    transport.take()
    connection.data_received(http2.PREFACE + http2.frame(http2.PING, 0, 0, bytes(8)))
    assert goaway_of(transport) == E.PROTOCOL_ERROR


def test_priority_and_unknown_frames_are_ignored(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)
    opened(connection, transport)
    connection.data_received(
        http2.frame(http2.PRIORITY, 0, 3, bytes(5))
        + http2.frame(0x20, 0xFF, 0, b"whatever")
        + http2.frame(http2.PING, 0, 0, b"12345678")
    )
    assert transport.take() == [(http2.PING, http2.ACK, 0, b"12345678")]
    assert not transport.closed


def test_a_bad_priority_length_resets_the_stream_only(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)
    opened(connection, transport)
    connection.data_received(http2.frame(http2.PRIORITY, 0, 3, bytes(4)))
    assert transport.take() == [(http2.RST_STREAM, 0, 3, E.FRAME_SIZE_ERROR.to_bytes(4))]
    assert not transport.closed


def test_stream_errors_we_answer_are_budgeted_like_resets(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Each bad PRIORITY frame draws an RST_STREAM: past the reset budget, GOAWAY."""
    connection, transport = connect(loop)
    opened(connection, transport)
    flood = b"".join(http2.frame(http2.PRIORITY, 0, sid, b"") for sid in range(1, 2_000, 2))
    connection.data_received(flood)
    frames = transport.take()
    assert [kind for kind, *_ in frames] == [http2.RST_STREAM] * RESETS + [http2.GOAWAY]
    assert int.from_bytes(frames[-1][3][4:8]) == E.ENHANCE_YOUR_CALM
    assert transport.closed


def open_calls(
    loop: asyncio.AbstractEventLoop, connection: GrpcConnection, first: int, count: int, body: bytes
) -> None:
    """``count`` calls on streams ``first``, ``first`` + 2, ... each with ``body`` as DATA."""
    encoder = hpack.Encoder()
    feed(
        loop,
        connection,
        b"".join(
            http2.headers_frames(sid, encoder.encode(REQUEST), False, 16_384)
            + (http2.frame(http2.DATA, 0, sid, body) if body else b"")
            for sid in range(first, first + 2 * count, 2)
        ),
    )


class Walks(dict[int, GrpcStream]):
    """A stream table that counts the passes over it."""

    walks = 0

    def values(self) -> dict_values[int, GrpcStream]:
        self.walks += 1
        return super().values()


def test_a_settings_frame_applies_its_last_window_in_one_pass(
    loop: asyncio.AbstractEventLoop,
) -> None:
    connection, transport = connect(loop)
    opened(connection, transport)
    open_calls(loop, connection, 1, 256, b"")
    table = Walks(connection._streams)
    connection._streams = table
    pairs = [(http2.INITIAL_WINDOW_SIZE, 65_535 + (i & 1)) for i in range(SETTINGS_PAIRS)]
    feed(loop, connection, http2.settings_frame(pairs))
    assert transport.take() == [(http2.SETTINGS, http2.ACK, 0, b"")]
    assert table.walks == 1  # not one pass per pair
    assert {stream.send_window for stream in dict.values(table)} == {65_536}  # the last pair's


def test_unfinished_messages_are_bounded_per_connection(loop: asyncio.AbstractEventLoop) -> None:
    connection, transport = connect(loop)  # max_message_bytes 1 MiB
    opened(connection, transport)
    room = BUFFERED // (1 << 20)
    started = (1 << 20).to_bytes(5) + bytes(100)  # a 1 MiB message: its prefix and 100 bytes
    open_calls(loop, connection, 1, room, started)
    assert not [kind for kind, *_ in transport.take() if kind == http2.HEADERS]
    open_calls(loop, connection, 2 * room + 1, 1, started)
    [(_, _, sid, block)] = [frame for frame in transport.take() if frame[0] == http2.HEADERS]
    answer = dict(decoded(block))
    assert (sid, answer["grpc-status"]) == (2 * room + 1, "8")
    assert f"bound of {BUFFERED}" in unquote(answer["grpc-message"])
    feed(loop, connection, http2.rst_stream(1, E.CANCEL))  # its reservation ends with it
    open_calls(loop, connection, 2 * room + 3, 1, started)
    assert not [kind for kind, *_ in transport.take() if kind == http2.HEADERS]


def test_only_a_message_still_arriving_starts_the_body_timeout(
    loop: asyncio.AbstractEventLoop,
) -> None:
    connection, transport = connect(loop)
    opened(connection, transport)
    open_calls(loop, connection, 1, 1, (5).to_bytes(5) + b"whole")
    assert len(connection._late) == 0
    open_calls(loop, connection, 3, 1, (5).to_bytes(5) + b"par")
    assert len(connection._late) == 1
    feed(loop, connection, http2.frame(http2.DATA, 0, 3, b"ts"))  # whole: the handler starts
    assert len(connection._late) == 0
