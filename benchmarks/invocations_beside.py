"""Online requests beside Batch Transform's: ``python -m benchmarks.invocations_beside``.

One server process on core 0. Each round runs wrk (single-record ``/predict``, 8 connections,
``--seconds``) from core 1 twice: alone, then while another client on core 1 keeps sending
6 MiB CSV bodies (about 104,000 lines of the data set) to ``/invocations``. It prints the
online requests' rate and latency both ways and the bulk rows per second, so the cost of a
large request to everyone else is measured, not assumed. Compare figures within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from benchmarks.load import ensure_wrk
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS
from reliability.server import ROOT, serve
from reliability.workload import data_path

MAX_PAYLOAD = 6 * 1024 * 1024


def six_mib_csv(frame: pd.DataFrame) -> tuple[bytes, int]:
    """The data set's lines, in order and again, as many whole ones as fit in 6 MiB."""
    cells = frame[list(RAW_COLUMNS)].astype(object).where(frame[list(RAW_COLUMNS)].notna(), "")
    lines = [",".join(map(str, row)).encode() + b"\n" for row in cells.itertuples(index=False)]
    body: list[bytes] = []
    size = count = 0
    while True:
        for line in lines:
            if size + len(line) > MAX_PAYLOAD:
                return b"".join(body), count
            body.append(line)
            size += len(line)
            count += 1


def online(url: str, seconds: int, body_file: Path) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", ensure_wrk(), "-t1", "-c8", f"-d{seconds}s", "-s"]
        + [str(ROOT / "benchmarks" / "post.lua"), url + "/predict"],
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def send_bodies(
    url: str, body: bytes, stop: threading.Event, bulk: list[tuple[int, float]]
) -> None:
    """POST ``body`` as CSV to /invocations from core 1 until ``stop``; each status and time."""
    os.sched_setaffinity(0, {1})  # this thread only
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            answer = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
            bulk.append((answer.status_code, time.perf_counter() - started))


def show(name: str, r: dict[str, float]) -> None:
    rate = r["requests"] / r["duration_us"] * 1e6
    print(
        f"  {name:<28} {rate:>7,.0f} req/s  p50 {r['p50_us'] / 1000:6.1f} ms  "
        f"p99 {r['p99_us'] / 1000:7.1f} ms  errors {r['errors']:.0f}  non-2xx {r['non2xx']:.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.invocations_beside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    body, lines = six_mib_csv(pd.read_csv(data_path()))
    record = ROOT / "benchmarks" / ".one-record.json"
    record.write_text(json.dumps(EXAMPLE_RECORD))
    artifacts = os.environ.get("HOUSING_ARTIFACTS", "artifacts")
    with serve(Path(artifacts), HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        assert server.proc is not None
        subprocess.run(
            ["taskset", "-pc", "0", str(server.proc.pid)], check=True, capture_output=True
        )
        print(f"6 MiB CSV body: {len(body):,} bytes, {lines:,} lines")
        for n in range(args.rounds):
            print(f"round {n + 1}")
            show("online alone", online(server.url, args.seconds, record))
            stop = threading.Event()
            bulk: list[tuple[int, float]] = []

            beside = threading.Thread(target=send_bodies, args=(server.url, body, stop, bulk))
            beside.start()
            show("online beside 6 MiB bodies", online(server.url, args.seconds, record))
            stop.set()
            beside.join()
            took = sum(t for _, t in bulk)
            statuses = sorted({s for s, _ in bulk})
            print(
                f"  bulk: {len(bulk)} bodies, status {statuses}, "
                f"{lines * len(bulk) / took:,.0f} rows/s"
            )
        server.terminate()
    record.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
