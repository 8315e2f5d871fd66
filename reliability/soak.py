"""Soak: hundreds of thousands of requests, and the server's memory and descriptors stay flat.

    python -m reliability.soak [--requests 200000] [--rounds 10] [--concurrency 32]

A real server (cpu) takes ``--requests`` in ``--rounds`` equal rounds of mixed requests (one
record, 10 records, SageMaker CSV, Open Inference Protocol; some ``total_bedrooms`` missing).
After a warm-up round, resident memory and open descriptors are read between rounds. Passes
when every answer is 200, RSS grows by at most 16 MiB from the first round to the last, and
the descriptor count is back where it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import pandas as pd

from reliability.loadgen import Body, drive, open_fds, rss_mib
from reliability.server import run_on_cpu_server, verdict
from reliability.workload import CSV, data_path, make_requests, offline_rows

MAX_RSS_GROWTH_MIB = 16.0  # allocator noise is a few MiB; a leak of 100 B/request is 20 MiB


def soak_bodies(artifacts: Path, frame: pd.DataFrame) -> list[Body]:
    """A mix like loadcheck's, with smaller multi-row requests so rounds stay short."""
    requests = make_requests(offline_rows(artifacts, frame, seed=3), 400, seed=3)
    small = [r for r in requests if len(r.expected) <= 10 or r.content_type == CSV]
    return [Body(r.route, r.body, r.content_type) for r in small[:200]]


def soak(url: str, pid: int, bodies: list[Body], total: int, rounds: int, conc: int) -> bool:
    per_round = total // rounds
    warm = asyncio.run(drive(url, bodies, conc, count=per_round // 4))
    print(f"warm-up   {warm.count:,} requests, statuses {dict(warm.statuses())}")
    rss, fds, bad = [rss_mib(pid)], [open_fds(pid)], 0
    print(f"start     rss {rss[0]:.1f} MiB, fds {fds[0]}")
    for n in range(1, rounds + 1):
        run = asyncio.run(drive(url, bodies, conc, count=per_round))
        statuses = run.statuses()
        bad += run.count - statuses[200]
        rss.append(rss_mib(pid))
        fds.append(open_fds(pid))
        print(
            f"round {n:2d}  {run.count:,} requests in {run.seconds:.1f}s "
            f"({run.count / run.seconds:,.0f}/s), {run.summary(200)}; not 200: "
            f"{run.count - statuses[200]}; rss {rss[-1]:.1f} MiB, fds {fds[-1]}"
        )
    growth = rss[-1] - rss[1]
    print(
        f"rss after round 1 {rss[1]:.1f} MiB, after round {rounds} {rss[-1]:.1f} MiB "
        f"(growth {growth:+.1f} MiB); fds {fds[0]} -> {fds[-1]}"
    )
    checks = {
        f"all {per_round * rounds:,} answers 200": bad == 0,
        f"rss growth <= {MAX_RSS_GROWTH_MIB:.0f} MiB": growth <= MAX_RSS_GROWTH_MIB,
        "no descriptor growth": fds[-1] <= fds[0],
    }
    return verdict(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    artifacts = Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    bodies = soak_bodies(artifacts, pd.read_csv(data_path()))
    return run_on_cpu_server(
        artifacts,
        lambda url, pid: soak(url, pid, bodies, args.requests, args.rounds, args.concurrency),
    )


if __name__ == "__main__":
    sys.exit(main())
