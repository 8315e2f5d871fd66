"""The concurrency curve: the service and the bare-ASGI reference from one request in flight to
hundreds, in one run, on this machine.

    make bench                                   # after benchmarks.run (about 3 minutes)
    python -m benchmarks.curve --quick           # 1 round, 2 s per point
    python -m benchmarks.curve --concurrency 1,16,64 --plot /tmp/curve.png

As ``benchmarks.run`` does: both servers start first, pinned to core 0 (``taskset -c 0``), and
wrk drives them from core 1 with ``post.lua``; each round measures every point on both servers
in turn, so a ratio's two sides are seconds apart, and the figures are medians over the rounds
(``--rounds``, default 3). Every request is one record (``modelspec.features.EXAMPLE_RECORD``),
at concurrency 1, 4, 16, 64 and 256 (``--concurrency``). A point is req/s (2xx answers), p50,
p99 and the server process's own CPU time per request; below each concurrency, the service's
figures over the reference's. Last, a PNG of the curve (``--plot``, by default
``docs/images/concurrency_curve.png``), titled with the date and the machine's CPU: only the
ratios within one run mean anything, since this machine's speed drifts within minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from benchmarks.load import ROOT, Body, Result, Server, ensure_wrk, measure
from benchmarks.run import (
    LOAD_CORE,
    REFERENCE_PLAN,
    SERVER_CORE,
    Plan,
    medians,
    service_env,
    start,
    write_bodies,
)
from benchmarks.targets import REFERENCE, SERVICE

CPU = {"HOUSING_DEVICE": "cpu"}
CONCURRENCIES = (1, 4, 16, 64, 256)
PLOT = ROOT / "docs" / "images" / "concurrency_curve.png"
BODY = "1 record"
COLORS = {REFERENCE: "tab:gray", SERVICE: "tab:blue"}
LABELS = {REFERENCE: "reference (bare ASGI)", SERVICE: "service (cpu device)"}
DPI = 110


@dataclass(frozen=True)
class Ratio:
    """The service's figures over the reference's at one concurrency."""

    concurrency: int
    requests_per_s: float
    p50: float
    p99: float
    cpu_per_request: float


def plan(artifacts: Path) -> list[Plan]:
    """The two servers, as ``benchmarks.run.plans`` starts them (the service without gRPC)."""
    service = (SERVICE, [sys.executable, "-m", "app"], {**service_env(artifacts), **CPU})
    return [REFERENCE_PLAN, service]


def by_key(results: Sequence[Result]) -> dict[tuple[str, int], Result]:
    return {(r.server, r.concurrency): r for r in results}


def ratios(results: Sequence[Result]) -> list[Ratio]:
    """Service over reference at every concurrency both were measured at, in order."""
    found = by_key(results)
    out = []
    for c in sorted({r.concurrency for r in results}):
        service, reference = found.get((SERVICE, c)), found.get((REFERENCE, c))
        if service is None or reference is None:
            continue
        out.append(
            Ratio(
                c,
                service.requests_per_s / reference.requests_per_s,
                service.p50_ms / reference.p50_ms,
                service.p99_ms / reference.p99_ms,
                service.cpu_us_per_request / reference.cpu_us_per_request,
            )
        )
    return out


def table(results: Sequence[Result]) -> str:
    """A Markdown table: per concurrency, the reference, the service and their ratios."""
    found = by_key(results)
    lines = [
        "| conc | server | req/s | p50 ms | p99 ms | CPU us/request | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratio_at = {q.concurrency: q for q in ratios(results)}
    for c in sorted({r.concurrency for r in results}):
        for name in (REFERENCE, SERVICE):
            r = found.get((name, c))
            if r is not None:
                lines.append(
                    f"| {c} | {name} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | "
                    f"{r.p99_ms:.2f} | {r.cpu_us_per_request:,.0f} | {r.errors} |"
                )
        q = ratio_at.get(c)
        if q is not None:
            lines.append(
                f"| {c} | **service / reference** | {q.requests_per_s:.2f}x | {q.p50:.2f}x | "
                f"{q.p99:.2f}x | {q.cpu_per_request:.2f}x | |"
            )
    return "\n".join(lines)


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown CPU"


def title(date: str, cpu: str, cores: int, rounds: int, seconds: int) -> str:
    plural = "s" * (rounds != 1)
    return (
        f"{date}, {cpu} ({cores} cores): servers on core {SERVER_CORE}, wrk on core "
        f"{LOAD_CORE}, 1 record per request, medians of {rounds} round{plural} of {seconds} s\n"
        "ratios within this run only: this machine's speed drifts within minutes"
    )


def _axis(ax: Axes, concurrencies: list[int], ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot(path: Path, results: Sequence[Result], heading: str) -> Path:
    """Three panels on a log concurrency axis, both servers on each: req/s, p50 and p99, and
    the server's CPU time per request; the service's ratios written beside its points."""
    found = by_key(results)
    concurrencies = sorted({r.concurrency for r in results})
    fig = Figure(figsize=(15, 5), layout="constrained")
    rate, latency, cpu = fig.subplots(1, 3)
    for name in (REFERENCE, SERVICE):
        points = [found[(name, c)] for c in concurrencies if (name, c) in found]
        xs = [r.concurrency for r in points]
        color, label = COLORS[name], LABELS[name]
        rate.plot(xs, [r.requests_per_s for r in points], "o-", color=color, label=label)
        latency.plot(xs, [r.p50_ms for r in points], "o-", color=color, label=f"{label}, p50")
        latency.plot(xs, [r.p99_ms for r in points], "s--", color=color, label=f"{label}, p99")
        cpu.plot(xs, [r.cpu_us_per_request for r in points], "o-", color=color, label=label)
    for q in ratios(results):
        service = found[(SERVICE, q.concurrency)]
        for ax, y, value in (
            (rate, service.requests_per_s, q.requests_per_s),
            (cpu, service.cpu_us_per_request, q.cpu_per_request),
        ):
            ax.annotate(
                f"{value:.2f}x", (q.concurrency, y), textcoords="offset points", xytext=(4, 6)
            )
    _axis(rate, concurrencies, "requests/s (2xx)")
    rate.set_ylim(bottom=0)
    rate.set_title("Throughput (service / reference beside its points)")
    _axis(latency, concurrencies, "latency (ms)")
    latency.set_yscale("log")
    latency.set_title("Latency: p50 (solid) and p99 (dashed)")
    _axis(cpu, concurrencies, "server CPU per request (us)")
    cpu.set_ylim(bottom=0)
    cpu.set_title("Server CPU time per request (user + system)")
    for ax in (rate, latency, cpu):
        ax.legend(fontsize="small")
    fig.suptitle(heading, fontsize="medium")
    FigureCanvasAgg(fig)  # the Agg canvas, whatever matplotlib's default backend
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def run_rounds(
    wrk: str,
    servers: list[Server],
    body: Body,
    concurrencies: Sequence[int],
    rounds: int,
    seconds: int,
) -> list[Result]:
    # Point by point, both servers in turn: a ratio's two sides are seconds apart. Which goes
    # first alternates by round, so neither always meets the machine a few seconds later.
    results: list[Result] = []
    for round_ in range(1, rounds + 1):
        for c in concurrencies:
            for server in servers if round_ % 2 else servers[::-1]:
                results.append(measure(wrk, server, body, c, seconds, LOAD_CORE))
        print(f"round {round_}/{rounds} done", file=sys.stderr)
    return medians(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="per point and round (default 5)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, medians (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 2 s per point and 1 round"
    )
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCIES)),
        help="comma-separated connection counts (default %(default)s)",
    )
    parser.add_argument("--plot", type=Path, default=PLOT, help="the PNG (default %(default)s)")
    parser.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    args = parser.parse_args()
    seconds = args.seconds or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    concurrencies = sorted({int(c) for c in args.concurrency.split(",")})
    wrk = ensure_wrk()
    body = write_bodies(Path(tempfile.mkdtemp()))[BODY]

    servers = start(plan(args.artifacts.resolve()), SERVER_CORE)
    try:
        results = run_rounds(wrk, servers, body, concurrencies, rounds, seconds)
    finally:
        for server in servers:
            server.stop()

    cpuinfo = Path("/proc/cpuinfo")
    heading = title(
        datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        cpu_model(cpuinfo.read_text() if cpuinfo.exists() else ""),
        os.cpu_count() or 1,
        rounds,
        seconds,
    )
    print(f"\n{heading}\n\n{table(results)}")
    print(f"\nplot: {plot(args.plot, results, heading)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
