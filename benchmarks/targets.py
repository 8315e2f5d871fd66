"""The targets of ``make bench`` (issues 13, 14 and 27), checked against one run's medians.

Every target is a ratio to the bare-ASGI reference, or to the service without price ranges,
measured in the same run, so the machine's speed on the day cancels out. Printed, not
enforced: the benchmark reports.
"""

from __future__ import annotations

import math

from benchmarks.load import Result

REFERENCE = "reference (bare ASGI)"
SERVICE = "cpu batching on"
STANDIN = "neuron stand-in, batching on"
FLOOR = "free device (floor)"
NO_RANGE = ", no range"  # a body's name with ``?coverage=0``: the price without its range
TRACED_ALL = "cpu batching on, traced 100%"
TRACED_SOME = "cpu batching on, traced 1%"
GRPC = " (gRPC)"  # a body's name over gRPC (benchmarks.grpc_load)


def _get(results: list[Result], server: str, body: str, c: int) -> Result | None:
    key = (server, body, c)
    return next((r for r in results if (r.server, r.body, r.concurrency) == key), None)


def _tail_shape(r: Result) -> float:
    """p99 over the mean latency, which a closed loop of ``concurrency`` connections fixes at
    concurrency / req/s."""
    return r.p99_ms / 1000 * r.requests_per_s / r.concurrency


def check_targets(pinned: list[Result], contended: list[Result]) -> int:
    lines: list[tuple[str, bool | None]] = []  # None: context, not a target

    def target(text: str, ok: bool) -> None:
        lines.append((text, ok))

    def note(text: str) -> None:
        lines.append((text, None))

    ref64, ref1 = _get(pinned, REFERENCE, "1 record", 64), _get(pinned, REFERENCE, "1 record", 1)
    cpu64, cpu1 = _get(pinned, SERVICE, "1 record", 64), _get(pinned, SERVICE, "1 record", 1)
    if ref64 and cpu64:
        ratio = cpu64.requests_per_s / ref64.requests_per_s
        target(f"cpu c64 1-record req/s = {ratio:.2f}x the reference's (>= 0.45)", ratio >= 0.45)
        ratio = cpu64.p99_ms / ref64.p99_ms
        target(f"cpu c64 1-record p99 = {ratio:.2f}x the reference's (<= 1.5)", ratio <= 1.5)
        # A closed loop of c connections: mean latency = c / req/s (Little's law), so a p99 is
        # its tail's shape (p99 / mean) over the throughput.
        shape, ref_shape = _tail_shape(cpu64), _tail_shape(ref64)
        note(
            f"p99 / mean latency: the service's {shape:.2f}, the reference's {ref_shape:.2f}; "
            f"with this tail, p99 <= 1.5x needs req/s >= {shape / (1.5 * ref_shape):.2f}x "
            "the reference's"
        )
    if ref1 and cpu1:
        ratio = cpu1.p50_ms / ref1.p50_ms
        target(f"cpu c1 p50 = {ratio:.2f}x the reference's (<= 3)", ratio <= 3)
    if cpu1 and cpu64:
        ratio = cpu1.cpu_us_per_request / cpu64.cpu_us_per_request
        target(f"cpu CPU/request at c1 = {ratio:.2f}x at c64 (<= 1.5)", ratio <= 1.5)
    if ref1 and ref64:
        ratio = ref1.cpu_us_per_request / ref64.cpu_us_per_request
        note(f"the reference's own CPU/request at c1 = {ratio:.2f}x at c64")
    ref_rows = _get(pinned, REFERENCE, "100 records", 64)
    cpu_rows = _get(pinned, SERVICE, "100 records", 64)
    if ref_rows and cpu_rows:
        ratio = cpu_rows.rows_per_s / ref_rows.rows_per_s
        target(f"cpu c64 100-record rows/s = {ratio:.2f}x the reference's (>= 0.5)", ratio >= 0.5)
        need = 0.5 * ref_rows.rows_per_s
        if not math.isnan(cpu_rows.device_us_per_row):
            ceiling = 1e6 / cpu_rows.device_us_per_row
            note(
                f"0.5x the reference is {need:,.0f} rows/s; the model's own calls took "
                f"{cpu_rows.device_us_per_row:.1f} us/row of the core in that run: at most "
                f"{ceiling:,.0f} rows/s with no server at all ({ceiling / need:.2f}x the need)"
            )
    for body, unit in (("1 record", "req/s"), ("100 records", "rows/s")):
        on, off = _get(pinned, SERVICE, body, 64), _get(pinned, SERVICE, body + NO_RANGE, 64)
        if on and off:
            ratio = on.rows_per_s / off.rows_per_s
            target(
                f"cpu c64 {body} {unit} with ranges = {ratio:.2f}x without (?coverage=0) "
                f"(>= 0.9); CPU/request {on.cpu_us_per_request:.0f} us against "
                f"{off.cpu_us_per_request:.0f}",
                ratio >= 0.9,
            )
    for body, unit in (("1 record", "req/s"), ("100 records", "rows/s")):
        http, rpc = _get(pinned, SERVICE, body, 64), _get(pinned, SERVICE, body + GRPC, 64)
        if http and rpc:
            note(
                f"gRPC c64 {body}: {rpc.rows_per_s:,.0f} {unit} = "
                f"{rpc.rows_per_s / http.rows_per_s:.2f}x HTTP's; CPU/request "
                f"{rpc.cpu_us_per_request:.0f} us against {http.cpu_us_per_request:.0f}; p50 "
                f"{rpc.p50_ms:.2f} ms against {http.p50_ms:.2f}; rows per device call "
                f"{rpc.rows_per_call:.1f} against {http.rows_per_call:.1f}; {rpc.errors} errors"
            )
            if body == "1 record":  # issue 27's targets: gRPC batches and goes as fast as HTTP
                ratio = rpc.rows_per_call / http.rows_per_call
                target(
                    f"gRPC c64 1-record rows per device call = {ratio:.2f}x HTTP's (>= 0.5)",
                    ratio >= 0.5,
                )
                ratio = rpc.requests_per_s / http.requests_per_s
                target(f"gRPC c64 1-record calls/s = {ratio:.2f}x HTTP's req/s (>= 1)", ratio >= 1)
        for traced in (TRACED_ALL, TRACED_SOME):
            on, off = _get(pinned, traced, body, 64), _get(pinned, SERVICE, body, 64)
            if on and off:
                note(
                    f"{traced.removeprefix('cpu batching on, ')} c64 {body}: "
                    f"{on.rows_per_s / off.rows_per_s:.2f}x the {unit} of tracing off; "
                    f"CPU/request {on.cpu_us_per_request:.0f} us against "
                    f"{off.cpu_us_per_request:.0f}"
                )
    standin = _get(pinned, STANDIN, "1 record", 64)
    if standin and ref64:
        ratio = standin.cpu_us_per_request / ref64.cpu_us_per_request
        target(
            f"neuron stand-in c64 CPU/request = {standin.cpu_us_per_request:.0f} us = "
            f"{ratio:.2f}x the reference's (<= 2)",
            ratio <= 2,
        )
    floor = _get(pinned, FLOOR, "1 record", 64)
    if floor and ref64:
        ratio = floor.cpu_us_per_request / ref64.cpu_us_per_request
        text = (
            f"free device c64 CPU/request = {floor.cpu_us_per_request:.0f} us = {ratio:.2f}x "
            "the reference's: the request path's floor, with every safeguard and no device work"
        )
        if standin:
            extra = standin.cpu_us_per_request - floor.cpu_us_per_request
            text += f"; the stand-in's preamble and device thread add {extra:.0f} us"
        note(text)
    xla_on, xla_off = (
        _get(pinned, "xla batching on", "1 record", 64),
        _get(pinned, "xla batching off", "1 record", 64),
    )
    if xla_on and xla_off:
        note(f"xla c64 batching on = {xla_on.requests_per_s / xla_off.requests_per_s:.1f}x off")
    c_ref = _get(contended, REFERENCE, "1 record", 64)
    c_cpu = _get(contended, SERVICE, "1 record", 64)
    if c_ref and c_cpu:
        note(
            f"unpinned with core 1 busy: cpu c64 req/s = "
            f"{c_cpu.requests_per_s / c_ref.requests_per_s:.2f}x the reference's, "
            f"CPU/request {c_cpu.cpu_us_per_request:.0f} us against {c_ref.cpu_us_per_request:.0f}"
        )
    print("\ntargets (this run's medians):")
    for text, ok in lines:
        mark = "    " if ok is None else ("[ok]" if ok else "[MISSED]")
        print(f"  {mark} {text}")
    return 0
