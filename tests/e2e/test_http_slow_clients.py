"""Slow and numerous HTTP clients against a real server (issue 26, finding 5): clients that send
their headers a byte at a time are closed after ``HOUSING_HEADER_TIMEOUT_S`` while others are
served, and connections beyond ``HOUSING_MAX_CONNECTIONS`` are refused at once.

The slow clients keep a few hundred sockets open (plus as many on the server's side: far under
the usual open-file limit of 1024 per process)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx

from modelspec.features import EXAMPLE_RECORD
from tests.support.server import ServerProcess, sample, serve

# A request whose headers never end: after the prefix, one more header byte each tick.
HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
TICK_S = 0.2  # a slow client's pace: several bytes within every header timeout


def rejected(server: ServerProcess, reason: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sample(text, "housing_rejected_requests_total", reason=reason)


class SlowClients:
    """Sockets that each send one header byte per tick and never finish their headers.

    ``run`` opens ``count`` of them and keeps that many open for ``keep_s`` seconds -- one
    that the server closes is replaced by a new one, and (``keep_s`` > 0) past ``keep_s`` until
    one was replaced, however late a busy machine sees the first close -- then keeps trickling
    bytes into those still open until the server has closed them all or ``wait_s`` passes.
    ``closed``: how many the server closed; ``answered``: how many got any bytes (the server
    closes them unanswered).
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened = 0
        self.closed = 0
        self.answered = 0
        self.still_open = 0
        self._sent: dict[socket.socket, int] = {}
        self._selector = selectors.DefaultSelector()

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setblocking(False)
        self._sent[sock] = 0
        self._selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _close(self, sock: socket.socket, data: bytes) -> None:
        self._selector.unregister(sock)
        del self._sent[sock]
        sock.close()
        self.closed += 1
        self.answered += bool(data)

    def _server_closed(self, sock: socket.socket) -> bool:
        """Read what is there: True when the server has closed the connection."""
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except BlockingIOError:
            if not data:
                return False  # nothing yet: still open
            self.answered += 1  # an answer, not an end: counts against the server
            return False
        except ConnectionResetError:
            pass
        self._close(sock, data)
        return True

    def _trickle(self) -> None:
        for sock, sent in list(self._sent.items()):
            byte = HEAD[sent : sent + 1] or b"a"
            try:
                sock.send(byte)
                self._sent[sock] = sent + 1
            except (BrokenPipeError, ConnectionResetError):
                self._close(sock, b"")
            except BlockingIOError:
                pass

    def run(self, keep_s: float, wait_s: float) -> None:
        refill_until = time.monotonic() + keep_s
        give_up = refill_until + wait_s
        while self.opened < self.count:
            self._open()

        def refilling(now: float) -> bool:
            return now < refill_until or (keep_s > 0 and self.opened == self.count)

        while self._sent or refilling(time.monotonic()):
            now = time.monotonic()
            if now >= give_up:
                break
            while refilling(now) and len(self._sent) < self.count:
                self._open()
            # The wait for the server's closes is also the slow clients' pace.
            for key, _ in self._selector.select(TICK_S):
                self._server_closed(key.fileobj)  # type: ignore[arg-type]
            self._trickle()
        self.still_open = len(self._sent)
        for sock in list(self._sent):
            self._selector.unregister(sock)
            sock.close()
        self._sent.clear()


class NormalClient:
    """POST /predict on one kept-alive connection until stopped; the latency of each answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                status = client.post("/predict", json=EXAMPLE_RECORD).status_code
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(status)

    def __enter__(self) -> NormalClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(60)

    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


def baseline(url: str, requests: int) -> NormalClient:
    """The normal client's latencies alone, over ``requests`` answers."""
    client = NormalClient(url)
    with client:
        deadline = time.monotonic() + 60
        while len(client.statuses) < requests and time.monotonic() < deadline:
            client.stop.wait(0.05)  # "not yet": look again
    return client


def test_slow_header_senders_are_closed_while_normal_clients_are_served(artifacts: Path) -> None:
    with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_HEADER_TIMEOUT_S="1") as server:
        server.wait_ready()
        assert server.port is not None
        alone = baseline(server.url, 300)
        slow = SlowClients(server.port, count=250)
        with NormalClient(server.url) as beside:
            # 250 slow clients at all times for 2 s, twice the header timeout (and on until
            # one closed was replaced), so the ones closed are replaced and closed too.
            slow.run(keep_s=2, wait_s=20)
        closes = rejected(server, "header_timeout")
        assert server.terminate() == 0
    print(
        f"\n/predict p99 alone: {alone.p99_ms():.1f} ms over {len(alone.latencies)}; beside "
        f"{slow.count} slow clients ({slow.opened} opened in 2 s): {beside.p99_ms():.1f} ms "
        f"over {len(beside.latencies)}"
    )
    assert slow.still_open == 0, f"{slow.still_open} of {slow.opened} slow clients still open"
    assert slow.closed == slow.opened > slow.count  # closed ones were replaced, and closed too
    assert slow.answered == 0  # closed unanswered
    assert alone.statuses and set(alone.statuses) == {200}
    assert beside.statuses and set(beside.statuses) == {200}
    assert closes >= slow.opened
    assert "Traceback" not in server.output


def test_workers_close_slow_header_senders_too(artifacts: Path) -> None:
    env = {"HOUSING_DEVICE": "cpu", "HOUSING_WORKERS": "2", "HOUSING_HEADER_TIMEOUT_S": "1"}
    with serve(artifacts, **env) as server:
        server.wait_ready()
        assert server.port is not None
        slow = SlowClients(server.port, count=40)
        slow.run(keep_s=0, wait_s=20)
        answer = httpx.post(f"{server.url}/predict", json=EXAMPLE_RECORD, timeout=10)
        assert server.terminate() == 0
    assert slow.opened == 40 and slow.still_open == 0 and slow.answered == 0
    assert answer.status_code == 200


def held_connection(port: int) -> socket.socket:
    """A connection the server has certainly accepted (it answered a request on it), holding
    the next request's first line: open until the header timeout, not the keep-alive one.

    A refusal means "not yet": the server has not seen an earlier client's close yet."""
    deadline = time.monotonic() + 30
    while True:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        with contextlib.suppress(ConnectionResetError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            if read_answer(sock).startswith(b"HTTP/1.1 200"):
                sock.sendall(b"GET /health/live HTTP/1.1\r\n")
                return sock
        sock.close()
        assert time.monotonic() < deadline, "the server kept refusing a connection"
        time.sleep(0.05)  # the poll interval


def read_answer(sock: socket.socket) -> bytes:
    """One answer with a body of content-length bytes (or what came before the end)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server closes (socket.timeout if it does not: the test fails)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_connections_over_the_bound_are_refused_and_the_others_served(artifacts: Path) -> None:
    limit = 20
    env = {
        "HOUSING_DEVICE": "cpu",
        "HOUSING_MAX_CONNECTIONS": str(limit),
        "HOUSING_HEADER_TIMEOUT_S": "120",  # the held connections outlive the test
    }
    with serve(artifacts, **env) as server:
        server.wait_ready()
        port = server.port
        assert port is not None
        held = [held_connection(port) for _ in range(limit)]
        extra = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            extra.append(read_to_end(sock))  # sends nothing: the server speaks first
            sock.close()
        # The held connections are served all along: finish their requests.
        for sock in held[1:]:
            sock.sendall(b"Host: x\r\n\r\n")
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
        held[0].close()  # room for one more: a new client is served once the server sees it
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"{server.url}/metrics", timeout=10)
                if response.status_code == 200:
                    answer = response
                    break
            time.sleep(0.05)  # the poll interval: refused means "not yet"
        for sock in held[1:]:
            sock.close()
        assert server.terminate() == 0
    assert answer is not None, "no connection was served after one of the held ones closed"
    for refusal in extra:
        head, _, body = refusal.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refusal
        assert b"connection: close" in head and b"retry-after: 1" in head
        assert b"HOUSING_MAX_CONNECTIONS=20" in body and b"Hint:" in body
    refused = sample(answer.text, "housing_rejected_requests_total", reason="connections")
    assert refused >= len(extra)
