"""Load benchmark: the service against a bare-ASGI reference, in one run, on this machine.

    make bench                              # everything (about 14 minutes)
    python -m benchmarks.run --quick --devices cpu

Every server runs pinned to core 0 (``taskset -c 0``) and wrk drives it from core 1 with
``post.lua``. All servers start first and stay up; each round measures every point on every
server in turn, so a ratio's two sides are seconds apart, and the table shows each figure's
median over the rounds (``--rounds``, default 3): one noisy minute on a shared machine does not
decide. A point is req/s (2xx answers), p50, p99 and the server process's own CPU time per
request, for single-record requests at concurrency 1 and 64 and 100-record requests at 64.
The servers:

* the reference: a bare ASGI app on the same uvicorn that reads the body, parses it with
  orjson and answers a constant -- the ceiling for any Python server here;
* the service on the cpu device, batching on, and off (``HOUSING_MAX_BATCH_SIZE=1``); with
  batching on, its gRPC port too, driven by h2load (``benchmarks.grpc_load``) with the same
  records, beside its HTTP points;
* the service with OpenTelemetry tracing on, every request sampled and one in a hundred,
  exporting over OTLP/HTTP to a sink that discards (``benchmarks.otlp_sink``, on wrk's core);
* the service with a NeuronCore stand-in (``benchmarks/standin_device.py``): device calls on
  the device thread, the host preamble, then a fixed wait that holds no CPU -- the host's cost
  per request when the device is not the CPU;
* the service with a free device (the same module): calls answer at once on the event loop, so
  its CPU per request is the floor of the request path with every safeguard (c64 only);
* on the xla device, batching on and off, when ``.venv-xla`` exists (``--devices``).

Every answer carries its price range (``HOUSING_INTERVAL_COVERAGE``'s default); the service on
the cpu device is also measured with ``?coverage=0`` at c64, for what the ranges cost.

For the service, each point also gives the time its device calls took per row (from its own
``/metrics``, in the same window): on the cpu device that is the model's share of the core, and
it bounds the rows/s any server could reach with this model here. Then the reference and the
service again without pinning while another process spins on core 1 (``--no-contended`` skips
it): a thread-count bug once hid from the pinned runs. Last, the issue's targets, checked
against this run's medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.grpc_load import ensure_h2load, grpc_bodies, measure_grpc
from benchmarks.load import ROOT, Body, CpuHog, Result, Server, ensure_wrk, free_port, measure
from benchmarks.otlp_sink import OtlpSink
from benchmarks.targets import (
    FLOOR,
    GRPC,
    NO_RANGE,
    REFERENCE,
    SERVICE,
    STANDIN,
    TRACED_ALL,
    TRACED_SOME,
    check_targets,
)
from modelspec.features import EXAMPLE_RECORD

SERVER_CORE, LOAD_CORE = "0", "1"
Plan = tuple[str, list[str], dict[str, str]]
# The traced servers: every request's trace sampled (1.0), or one in a hundred (0.01).
OTEL = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}


class Generators(NamedTuple):
    wrk: str  # HTTP/1.1
    h2load: str  # gRPC


def hundred_records() -> list[dict[str, Any]]:
    return [
        {
            **EXAMPLE_RECORD,
            "median_income": 1 + (i % 14),
            "total_bedrooms": None if i % 10 == 0 else 129.0,
        }
        for i in range(100)
    ]


def write_bodies(folder: Path) -> dict[str, Body]:
    one = folder / "one.json"
    one.write_bytes(json.dumps(EXAMPLE_RECORD).encode())
    many = folder / "hundred.json"
    many.write_bytes(json.dumps({"instances": hundred_records()}).encode())
    return {"1 record": Body("1 record", one, 1), "100 records": Body("100 records", many, 100)}


def without_ranges(bodies: dict[str, Body]) -> dict[str, Body]:
    """``bodies`` and each again with ``?coverage=0``: the price without its range."""
    plain = {
        name + NO_RANGE: body._replace(name=name + NO_RANGE, query="?coverage=0")
        for name, body in bodies.items()
    }
    return {**bodies, **plain}


REFERENCE_PLAN: Plan = (REFERENCE, [sys.executable, "-m", "benchmarks.reference_app"], {})


def service_env(artifacts: Path) -> dict[str, str]:
    """What every service under load is started with (its device and extras added)."""
    return {
        "HOUSING_ARTIFACTS": str(artifacts),
        "HOUSING_LOG_LEVEL": "warning",
        "PJRT_DEVICE": "CPU",
        # 64 connections x 100 rows (or 256 x 1): room for every row, so the points measure
        # throughput, not load shedding (make overload measures that).
        "HOUSING_QUEUE_ROWS": "8192",
        "HOUSING_GRPC_PORT": "0",
    }


def plans(devices: Iterable[str], artifacts: Path, sink: str) -> list[Plan]:
    """The servers; ``sink``: the OTLP endpoint the traced ones export to."""
    python = {"cpu": sys.executable, "xla": str(ROOT / ".venv-xla" / "bin" / "python")}
    out: list[Plan] = [REFERENCE_PLAN]
    base = service_env(artifacts)
    for device in devices:
        if not Path(python[device]).exists():
            print(f"skipping {device}: {python[device]} missing (make test-xla creates it)")
            continue
        app = [python[device], "-m", "app"]
        env = {**base, "HOUSING_DEVICE": device}
        if device == "cpu":  # the service: HTTP and gRPC on one model, one process
            out.append((SERVICE, app, {**env, "HOUSING_GRPC_PORT": str(free_port())}))
            for name, share in ((TRACED_ALL, "1.0"), (TRACED_SOME, "0.01")):
                traced = {**env, **OTEL, "OTEL_TRACES_SAMPLER_ARG": share}
                out.append((name, app, {**traced, "OTEL_EXPORTER_OTLP_ENDPOINT": sink}))
        else:
            out.append((f"{device} batching on", app, env))
        out.append((f"{device} batching off", app, {**env, "HOUSING_MAX_BATCH_SIZE": "1"}))
        if device == "cpu":
            standin = [sys.executable, "-m", "benchmarks.standin_device"]
            out.append((STANDIN, standin, {**env, "HOUSING_DEVICE_THREAD": "true"}))
            free = {**env, "STANDIN_DEVICE": "free", "HOUSING_DEVICE_THREAD": "false"}
            out.append((FLOOR, standin, free))
    return out


def points(server: str, bodies: dict[str, Body]) -> list[tuple[Body, int]]:
    """What each server is measured at (of the ``bodies`` given): single records at 1 and 64,
    and 100-record requests at 64 where batching combines them; the service at 64 without
    ranges too, for what they cost."""
    if server == FLOOR:
        return [(bodies["1 record"], 64)] if "1 record" in bodies else []
    wanted = [("1 record", 1), ("1 record", 64)]
    if "batching off" not in server and server != STANDIN:
        wanted.append(("100 records", 64))
    if server == SERVICE:
        wanted += [("1 record" + NO_RANGE, 64), ("100 records" + NO_RANGE, 64)]
        wanted += [("1 record" + GRPC, 64), ("100 records" + GRPC, 64)]
    if server in (TRACED_ALL, TRACED_SOME):
        wanted = [("1 record", 64), ("100 records", 64)]
    return [(bodies[name], c) for name, c in wanted if name in bodies]


def medians(results: list[Result]) -> list[Result]:
    """One Result per (server, body, concurrency): the median of each figure over rounds."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.server, r.body, r.concurrency), []).append(r)

    def med(rs: list[Result], field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in rs))

    return [
        Result(
            *key,
            med(rs, "requests_per_s"),
            med(rs, "p50_ms"),
            med(rs, "p99_ms"),
            sum(r.errors for r in rs),
            rs[0].rows_per_request,
            med(rs, "cpu_us_per_request"),
            med(rs, "device_us_per_row"),
            med(rs, "rows_per_call"),
        )
        for key, rs in groups.items()
    ]


def run_rounds(
    load: Generators,
    servers: list[Server],
    bodies: dict[str, Body],
    rounds: int,
    seconds: int,
    load_core: str | None,
) -> list[Result]:
    # Point by point, every server in turn: a ratio's two sides are measured seconds apart,
    # not minutes (this machine's speed drifts by a third within minutes). A point without
    # ranges is measured right beside its point with them, first in every other round.
    order: list[tuple[Body, int]] = []
    for server in servers:
        order += [p for p in points(server.name, bodies) if p not in order]
    results: list[Result] = []
    for round_ in range(1, rounds + 1):
        for point in order:
            body, concurrency = point
            if body.name.endswith(NO_RANGE):
                continue
            for server in servers:
                wanted = points(server.name, bodies)
                if point not in wanted:
                    continue
                pair = [point]
                plain = (bodies.get(body.name + NO_RANGE), concurrency)
                if plain in wanted:
                    pair = [point, plain] if round_ % 2 else [plain, point]
                for b, c in pair:
                    assert b is not None
                    if b.name.endswith(GRPC):
                        results.append(measure_grpc(load.h2load, server, b, c, seconds, load_core))
                    else:
                        results.append(measure(load.wrk, server, b, c, seconds, load_core))
        print(f"round {round_}/{rounds} done", file=sys.stderr)
    return medians(results)


def start(plan: list[Plan], core: str | None) -> list[Server]:
    servers: list[Server] = []
    try:
        for name, argv, env in plan:
            probe = "/" if name == REFERENCE else "/health/ready"
            servers.append(Server(name, argv, env, probe, core))
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _blank_nan(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


def print_table(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    head = (
        f"{'server':<30} {'body':<22} {'conc':>4} {'req/s':>8} {'rows/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'device us/row':>13} "
        f"{'rows/call':>9} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.server:<30} {r.body:<22} {r.concurrency:>4} {r.requests_per_s:>8,.0f} "
            f"{r.rows_per_s:>9,.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{r.cpu_us_per_request:>10.0f} {_blank_nan(r.device_us_per_row):>13} "
            f"{_blank_nan(r.rows_per_call):>9} {r.errors:>6}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="per point and round (default 5)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, medians (default 3)")
    parser.add_argument("--devices", default="cpu,xla", help="cpu, xla or both")
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 2 s per point and 1 round"
    )
    parser.add_argument("--no-contended", action="store_true", help="skip the unpinned run")
    parser.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    args = parser.parse_args()
    seconds = args.seconds or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    load = Generators(ensure_wrk(), ensure_h2load())
    artifacts = args.artifacts.resolve()
    folder = Path(tempfile.mkdtemp())
    bodies = without_ranges(write_bodies(folder))
    # The same records as gRPC calls (benchmarks.grpc_load).
    bodies |= grpc_bodies(folder, {"1 record": [EXAMPLE_RECORD], "100 records": hundred_records()})
    sink = OtlpSink(LOAD_CORE)
    plan = plans(args.devices.split(","), artifacts, sink.endpoint)

    try:
        servers = start(plan, SERVER_CORE)
        try:
            pinned = run_rounds(load, servers, bodies, rounds, seconds, LOAD_CORE)
        finally:
            for server in servers:
                server.stop()
    finally:
        sink.stop()
    print_table(
        f"pinned: servers on core {SERVER_CORE}, wrk on core {LOAD_CORE}; "
        f"medians of {rounds} round(s), {seconds:g} s per point",
        pinned,
    )

    contended: list[Result] = []
    if not args.no_contended:
        hog = CpuHog(LOAD_CORE)
        servers = start([p for p in plan if p[0] in (REFERENCE, SERVICE)], None)
        try:
            one = {"1 record": bodies["1 record"]}
            contended = run_rounds(load, servers, one, rounds, seconds, None)
        finally:
            for server in servers:
                server.stop()
            hog.stop()
        contended = [r for r in contended if r.concurrency == 64]
        print_table(f"unpinned, another process spinning on core {LOAD_CORE}", contended)

    return check_targets(pinned, contended)


if __name__ == "__main__":
    sys.exit(main())
