"""The parts of ``make bench`` that drive load: server processes, wrk, and one measurement.

A ``Server`` is a process started on a free port (pinned to one core, or not), waited for by
polling a route, and stopped with SIGTERM. ``measure`` runs wrk against it and reads the
server's own CPU time (user + system, from ``/proc/<pid>/stat``) before and after, so each
``Result`` carries the server's CPU microseconds per request beside req/s and latency, and,
for the service, the time its device calls took per row in that same window (from its own
``/metrics``: ``housing_device_duration_seconds`` over ``housing_batch_rows``).
``CpuHog`` is a competing load: a process that spins on one core.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "post.lua"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    server: str
    body: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int
    cpu_us_per_request: float
    device_us_per_row: float = math.nan  # NaN: not the service (no /metrics)
    rows_per_call: float = math.nan  # rows per device call, in the same window

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


class Target(Protocol):
    """What ``measure`` drives: a named server at ``url`` that may know its CPU time."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    def cpu_seconds(self) -> float: ...


@dataclass(frozen=True)
class Started:
    """A server this module did not start: its CPU time is unknown (NaN per request)."""

    name: str
    url: str

    def cpu_seconds(self) -> float:
        return math.nan


def device_totals(url: str) -> tuple[float, float, float] | None:
    """(seconds in device calls, rows in them, device calls) so far, from the service's
    /metrics; None for a server without them (the reference)."""
    try:
        answer = httpx.get(url + "/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    totals = {}
    for line in answer.text.splitlines():
        name, _, value = line.partition(" ")
        if name in DEVICE_TOTALS:
            totals[name] = float(value)
    if len(totals) != len(DEVICE_TOTALS):
        return None
    return tuple(totals[name] for name in DEVICE_TOTALS)  # type: ignore[return-value]


DEVICE_TOTALS = (
    "housing_device_duration_seconds_sum",
    "housing_batch_rows_sum",
    "housing_batch_rows_count",
)


def device_figures(
    before: tuple[float, float, float] | None, after: tuple[float, float, float] | None
) -> tuple[float, float]:
    """(device us per row, rows per device call) between two ``device_totals``."""
    if before is None or after is None or after[1] <= before[1]:
        return math.nan, math.nan
    rows, calls = after[1] - before[1], after[2] - before[2]
    return (after[0] - before[0]) / rows * 1e6, rows / max(calls, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process, on ``core`` (None: wherever the kernel puts it)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], probe: str, core: str | None
    ) -> None:
        self.name, self.port, self.probe = name, free_port(), probe
        # gRPC's port is fixed by default (8081): off unless ``env`` gives one.
        self.env = {"HOUSING_GRPC_PORT": "0", **env}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        pin = ["taskset", "-c", core] if core is not None else []
        self.proc = subprocess.Popen(
            [*pin, *argv],  # taskset execs the server: the pid is the server's
            env={
                **os.environ,
                **self.env,
                "HOUSING_PORT": str(self.port),
                "HOUSING_HOST": "127.0.0.1",
            },
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.env['HOUSING_GRPC_PORT']}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + self.probe, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.2)  # polling a process we do not control; not a test
        self.log.seek(0)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read().decode()[-3000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class CpuHog:
    """A process that keeps one core busy (a Python spin loop) until stopped."""

    def __init__(self, core: str) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", core, sys.executable, "-c", "while True: pass"]
        )

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def ensure_tool(command: str, package: str) -> str:
    """The path of ``command``, installing Debian's ``package`` first if it is missing."""
    path = shutil.which(command)
    if path is None:
        print(f"{command} not found: installing {package} from Debian", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)
        path = shutil.which(command)
    assert path is not None
    return path


def ensure_wrk() -> str:
    return ensure_tool("wrk", "wrk")


class Body(NamedTuple):
    """What a point sends: its name, the file of its body, its rows per request, and a query
    for ``/predict`` (e.g. ``?coverage=0``)."""

    name: str
    file: Path
    rows: int
    query: str = ""


def run_wrk(
    wrk: str, url: str, body: Path, concurrency: int, seconds: int, core: str | None
) -> dict[str, int]:
    """One wrk run POSTing ``body`` to ``url`` (``/predict`` and any query); pinned to
    ``core`` unless None."""
    pin = ["taskset", "-c", core] if core is not None else []
    out = subprocess.run(
        [
            *pin,
            *(wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s"),
            *("-s", str(LUA), url),
        ],
        env={**os.environ, "BODY_FILE": str(body)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure(
    wrk: str,
    server: Target,
    body: Body,
    concurrency: int,
    seconds: int,
    core: str | None,
) -> Result:
    """One point: ``body`` POSTed to ``/predict`` at ``concurrency``."""
    name, path, rows, query = body
    url = f"{server.url}/predict{query}"
    run_wrk(wrk, url, path, min(concurrency, 8), 1, core)  # warm connections and caches
    device_before = device_totals(server.url)
    cpu_before = server.cpu_seconds()
    r = run_wrk(wrk, url, path, concurrency, seconds, core)
    cpu = server.cpu_seconds() - cpu_before
    device_us_per_row, rows_per_call = device_figures(device_before, device_totals(server.url))
    requests = max(r["requests"], 1)
    return Result(
        server.name,
        name,
        concurrency,
        (r["requests"] - r["non2xx"]) / (r["duration_us"] / 1e6),  # answered with a 2xx
        r["p50_us"] / 1000,
        r["p99_us"] / 1000,
        r["errors"] + r["non2xx"],
        rows,
        cpu / requests * 1e6,  # over every answer: a refusal costs CPU too
        device_us_per_row,
        rows_per_call,
    )
