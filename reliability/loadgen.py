"""A load generator that keeps every request's outcome, and a sampler of the server process.

wrk and hey summarise; these scripts need each request's status and latency (503s apart from
200s, connection errors counted, throughput per second), so the load comes from aiohttp, the
fastest Python client here (about 3x the server's 100-row capacity on one core).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np


@dataclass(frozen=True)
class Body:
    route: str
    data: bytes
    content_type: str = "application/json"


@dataclass
class Run:
    """Every request of one run: when it started (s from the run's start), how long it took,
    and its status (0: a connection error or client timeout)."""

    seconds: float = 0.0
    started: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.status)

    def statuses(self) -> Counter[int]:
        return Counter(self.status)

    def latencies_ms(self, status: int) -> np.ndarray:
        lat = np.asarray(self.latency) * 1000
        return lat[np.asarray(self.status) == status]

    def per_second(self, status: int = 200) -> list[int]:
        """Requests with ``status`` finished in each whole second of the run."""
        ends = np.asarray(self.started) + np.asarray(self.latency)
        ends = ends[np.asarray(self.status) == status]
        return np.bincount(ends.astype(int), minlength=int(self.seconds) + 1).tolist()[
            : int(self.seconds)
        ]

    def summary(self, status: int) -> str:
        lat = self.latencies_ms(status)
        if lat.size == 0:
            return f"{status}: 0"
        p50, p99 = np.percentile(lat, [50, 99])
        return (
            f"{status}: {lat.size:,} ({lat.size / self.seconds:,.0f}/s) "
            f"p50 {p50:.1f} ms p99 {p99:.1f} ms max {lat.max():.1f} ms"
        )


async def drive(
    url: str,
    bodies: Sequence[Body],
    concurrency: int,
    *,
    seconds: float | None = None,
    count: int | None = None,
    timeout_s: float = 30,
) -> Run:
    """``concurrency`` connections send ``bodies`` round-robin, for ``seconds`` or ``count``
    requests in all, each as soon as its connection's previous answer is read."""
    if (seconds is None) == (count is None):
        raise ValueError("give seconds or count")
    run = Run()
    issued = 0
    start = time.perf_counter()
    stop_at = start + seconds if seconds is not None else float("inf")

    def next_body() -> Body | None:
        nonlocal issued
        if (count is not None and issued >= count) or time.perf_counter() >= stop_at:
            return None
        issued += 1
        return bodies[issued % len(bodies)]

    async def connection(session: aiohttp.ClientSession) -> None:
        while (body := next_body()) is not None:
            began = time.perf_counter()
            status = 0
            try:
                headers = {"content-type": body.content_type}
                async with session.post(body.route, data=body.data, headers=headers) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError):
                pass
            run.started.append(began - start)
            run.latency.append(time.perf_counter() - began)
            run.status.append(status)

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(url, connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(connection(session) for _ in range(concurrency)))
    run.seconds = time.perf_counter() - start
    return run


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (VmRSS), MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
