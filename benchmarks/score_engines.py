"""Rows per second of ``python -m app.score``'s two engines on the same rows, on this machine.

    python -m benchmarks.score_engines          # HOUSING_ARTIFACTS (default artifacts/), cpu
    python -m benchmarks.score_engines --copies 25 --concurrency 1,2 --num-cpus 2

The data set (HOUSING_DATA) is written ``--copies`` times into a temp folder, one CSV file per
copy (20,640 rows each: 516,000 rows for 25), and once more as one file of all of them. The
local engine scores the one file; the ray engine the folder, in a local Ray of ``--num-cpus``
CPUs started once (its start and stop are timed apart), at each ``--concurrency``. A run is
timed around the whole call: the model's load (local) or the actors' start (ray) is in it,
Ray's own start is not. Needs the scale extra.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from offline.score.cli import build_parser
from offline.score.cli import main as score_main
from reliability.workload import data_path

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(data: Path, folder: Path, copies: int) -> tuple[Path, Path, int]:
    """``folder/parts/part-NNN.csv`` (a copy of the data set each) and ``folder/all.csv`` (all
    of them in one file); and how many rows they hold."""
    raw = data.read_bytes()
    header, _, body = (gzip.decompress(raw) if data.suffix == ".gz" else raw).partition(b"\n")
    body = body if body.endswith(b"\n") else body + b"\n"
    parts = folder / "parts"
    parts.mkdir()
    for k in range(copies):
        (parts / f"part-{k:03d}.csv").write_bytes(header + b"\n" + body)
    whole = folder / "all.csv"
    with whole.open("wb") as fh:
        fh.write(header + b"\n")
        for _ in range(copies):
            fh.write(body)
    return parts, whole, body.count(b"\n") * copies


def timed(call: Callable[[], int]) -> float:
    started = time.perf_counter()
    code = call()
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"a run exited with {code}; see its output above")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.score_engines", description=__doc__)
    p.add_argument("--copies", type=int, default=25, help="copies of the data set (20,640 rows)")
    p.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="the ray engine's actors, one run each (comma-separated)",
    )
    p.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="the local Ray's CPUs")
    p.add_argument("--chunk-rows", default="8192")
    args = p.parse_args(argv)
    os.environ.setdefault("HOUSING_ARTIFACTS", str(ROOT / "artifacts"))
    os.environ.setdefault("HOUSING_DEVICE", "cpu")
    data = data_path()
    try:
        import ray

        from offline.score import ray_engine
    except ImportError:
        print("the benchmark needs the scale extra: pip install 'housing-inference[scale]'")
        return 1

    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="score-engines-") as tmp:
        parts, whole, rows = make_inputs(data, Path(tmp), args.copies)
        print(f"{rows:,} rows: {whole} and {args.copies} files in {parts}", flush=True)
        out = Path(tmp) / "out"
        common = ["--chunk-rows", args.chunk_rows, "--no-progress"]
        seconds = timed(lambda: score_main([str(whole), f"{out}.csv", *common]))
        results.append(("local", seconds))

        started = time.perf_counter()
        ray_engine.connect(args.num_cpus)
        ray_start = time.perf_counter() - started
        for concurrency in args.concurrency:
            shutil.rmtree(out, ignore_errors=True)
            ray_args = build_parser().parse_args(
                ["--engine", "ray", str(parts), str(out), "--concurrency", str(concurrency)]
                + common
            )
            seconds = timed(partial(ray_engine.run, ray_args))
            results.append((f"ray, concurrency {concurrency}", seconds))
        started = time.perf_counter()
        ray.shutdown()
        ray_stop = time.perf_counter() - started

    local = results[0][1]
    print(f"\n{rows:,} rows, {os.cpu_count()} CPUs here, local Ray of {args.num_cpus} CPUs")
    print(f"{'engine':<40} {'seconds':>8} {'rows/s':>9} {'vs local':>9}")
    for label, seconds in results:
        print(f"{label:<40} {seconds:8.1f} {rows / seconds:9,.0f} {local / seconds:8.2f}x")
    print(f"ray.init: {ray_start:.1f}s, ray.shutdown: {ray_stop:.1f}s (once per process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
