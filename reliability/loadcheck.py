"""Correct under load: every concurrent client gets its own right answer.

    python -m reliability.loadcheck [--requests 20000] [--concurrency 64] [--grpc-requests 5000]
                                    [--url URL [--grpc HOST:PORT]]

Starts a real server (cpu, batching on) unless ``--url`` is given, sends the requests of
``reliability.workload`` from ``--concurrency`` keep-alive connections at once, and checks
that every answer is 200 and equals the offline model's dollars for exactly that request's
rows, in order (relative error <= 1e-5), and their price ranges (within 1e-5 of the price,
plus a cent for rounding). Then the same over gRPC (``reliability.grpc_load``), as many
calls in flight at once. Prints the counts; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd

from reliability.server import free_port, serve
from reliability.workload import Request, data_path, make_requests, offline_rows

RELATIVE_TOLERANCE = 1e-5
CENT = 0.01  # ranges are rounded to the cent, the offline model's are not


@dataclass
class LoadcheckReport:
    requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    # HTTP statuses, or gRPC status codes' names ("OK") in the gRPC phase.
    statuses: Counter[int | str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # what was wrong, one line per request
    worst_relative_error: float = 0.0
    ranges: int = 0  # rows whose range was checked
    worst_range_error: float = 0.0  # dollars

    @property
    def passed(self) -> bool:
        answered = self.statuses.get(200, 0) + self.statuses.get("OK", 0)
        return not self.wrong and answered == self.requests

    def lines(self) -> list[str]:
        out = [
            f"requests {self.requests}  rows {self.rows}  in {self.seconds:.1f}s "
            f"({self.requests / self.seconds:,.0f} req/s, {self.rows / self.seconds:,.0f} rows/s)",
            "routes   " + "  ".join(f"{r} {n}" for r, n in sorted(self.by_route.items())),
            "statuses " + "  ".join(f"{s}: {n}" for s, n in self.statuses.most_common()),
            f"answers equal to the offline model: {self.requests - len(self.wrong)}"
            f"/{self.requests}; worst relative error {self.worst_relative_error:.2e}",
            f"price ranges checked: {self.ranges} rows; worst bound off by "
            f"${self.worst_range_error:.2f}",
        ]
        out += [f"  WRONG {w}" for w in self.wrong[:10]]
        return out


def check_answer(
    request: Request, status: int, body: bytes, report: LoadcheckReport, n: int
) -> None:
    """Count answer ``n`` of ``request`` in ``report``, noting it when it is not the offline
    model's (a status other than 200, or a table that differs)."""
    report.statuses[status] += 1
    report.by_route[request.route] += 1
    if status != 200:
        report.wrong.append(f"#{n} {request.route}: {status} {body[:200]!r}")
        return
    compare(request.route, request.read(body), request.expected, report, n)


def compare(route: str, got: np.ndarray, want: np.ndarray, report: LoadcheckReport, n: int) -> None:
    """Check an answer's table against the offline model's, noting what is wrong in ``report``."""
    if got.shape != want.shape:
        count = f"{got.shape[0]} rows x {got.shape[1]} for {want.shape[0]} x {want.shape[1]}"
        report.wrong.append(f"#{n} {route}: {count}")
        return
    relative = np.abs(got[:, 0] - want[:, 0]) / np.abs(want[:, 0])
    worst = float(relative.max())
    report.worst_relative_error = max(report.worst_relative_error, worst)
    if not worst <= RELATIVE_TOLERANCE:  # `not <=`: a NaN is wrong too
        report.wrong.append(f"#{n} {route}: row {int(relative.argmax())} off by {worst}")
        return
    if want.shape[1] == 3:
        off = np.abs(got[:, 1:] - want[:, 1:]).max(axis=1)
        allowed = RELATIVE_TOLERANCE * np.abs(want[:, 0]) + CENT
        report.ranges += len(off)
        report.worst_range_error = max(report.worst_range_error, float(off.max()))
        if not np.all(off <= allowed):
            row = int(np.argmax(off - allowed))
            report.wrong.append(f"#{n} {route}: row {row}'s range off by ${off[row]:.2f}")


async def run_load(url: str, requests: list[Request], concurrency: int) -> LoadcheckReport:
    """Send every request (``concurrency`` at a time) and check each answer."""
    report = LoadcheckReport(requests=len(requests))
    report.rows = sum(len(r.expected) for r in requests)
    queue = iter(enumerate(requests))

    async def client_loop(session: aiohttp.ClientSession) -> None:
        for n, request in queue:  # one shared iterator: each request is taken exactly once
            try:
                headers = {"content-type": request.content_type}
                if request.accept is not None:
                    headers["accept"] = request.accept
                async with session.post(request.route, data=request.body, headers=headers) as r:
                    body = await r.read()
            except aiohttp.ClientError as exc:
                report.statuses[0] += 1
                report.wrong.append(f"#{n} {request.route}: {type(exc).__name__}: {exc}")
                continue
            check_answer(request, r.status, body, report, n)

    # aiohttp rather than httpx: at 64 connections httpx's pool costs more CPU than the server
    # (140 req/s measured), and the client must not be what limits the load.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    started = time.perf_counter()
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client_loop(session) for _ in range(concurrency)))
    report.seconds = time.perf_counter() - started
    return report


def loadcheck(
    artifacts: Path,
    frame: pd.DataFrame,
    url: str,
    count: int,
    concurrency: int,
    seed: int = 0,
    grpc_target: str | None = None,
    grpc_count: int = 0,
) -> list[LoadcheckReport]:
    """The HTTP phase's report, then (given a target and a count) the gRPC phase's."""
    from reliability.grpc_load import make_grpc_requests, run_grpc_load

    rows = offline_rows(artifacts, frame, seed)
    reports = [asyncio.run(run_load(url, make_requests(rows, count, seed), concurrency))]
    if grpc_target is not None and grpc_count:
        requests = make_grpc_requests(rows, grpc_count, seed)
        reports.append(asyncio.run(run_grpc_load(grpc_target, requests, concurrency)))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--url", help="a running server (default: start one on the artifacts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grpc-requests", type=int, default=5_000, help="then this many over gRPC (0: none)"
    )
    parser.add_argument("--grpc", help="host:port of a running server's gRPC (with --url)")
    args = parser.parse_args(argv)
    artifacts = Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    frame = pd.read_csv(data_path())
    print(f"loadcheck: {args.requests} requests at concurrency {args.concurrency}", flush=True)
    count, concurrency, seed = args.requests, args.concurrency, args.seed
    grpc_count = args.grpc_requests if (args.grpc or not args.url) else 0
    if args.url:
        reports = loadcheck(
            artifacts, frame, args.url, count, concurrency, seed, args.grpc, grpc_count
        )
    else:
        with serve(artifacts, HOUSING_DEVICE="cpu", HOUSING_GRPC_PORT=str(free_port())) as server:
            server.wait_ready()
            reports = loadcheck(
                artifacts,
                frame,
                server.url,
                count,
                concurrency,
                seed,
                server.grpc_target,
                grpc_count,
            )
            server.terminate()
    passed = True
    for name, report in zip(("HTTP", "gRPC"), reports, strict=False):
        print(f"{name}:")
        print("\n".join("  " + line for line in report.lines()))
        passed = passed and report.passed
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
