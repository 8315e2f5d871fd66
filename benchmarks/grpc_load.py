"""``make bench``'s gRPC points: h2load replaying one pre-encoded ``ModelInfer`` call.

h2load (Debian's nghttp2-client) is a C HTTP/2 load generator: it sends the same framed gRPC
message (a 5-byte prefix and the protobuf, as ``tritonclient`` would send it: FP32 and BYTES in
``raw_input_contents``) on ``concurrency`` connections, one call in flight on each, as wrk does
for HTTP/1.1 with keep-alive. So the client costs little, and the two protocols are driven
alike. h2load counts HTTP 200s, and a gRPC error is a 200 with a non-zero ``grpc-status``
trailer, so every call is checked on the server's side: its ``housing_requests_total`` with
status ``OK`` must grow by exactly the calls h2load completed (the rest are the point's errors).
Percentiles come from h2load's per-request log.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.grpc import open_inference_grpc_pb2 as pb
from app.grpc.service import INFER
from benchmarks.load import Body, Result, device_figures, device_totals, ensure_tool
from benchmarks.targets import GRPC
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS


def ensure_h2load() -> str:
    return ensure_tool("h2load", "nghttp2-client")


def framed_call(records: list[dict[str, Any]]) -> bytes:
    """A length-prefixed ``ModelInferRequest`` for ``records``, as sent on the wire."""
    request = pb.ModelInferRequest(model_name="housing")
    n = len(records)
    for name in NUMERIC_COLUMNS:
        request.inputs.add(name=name, datatype="FP32", shape=[n])
        values = [np.nan if r[name] is None else r[name] for r in records]
        request.raw_input_contents.append(np.asarray(values, "<f4").tobytes())
    request.inputs.add(name=CATEGORICAL_COLUMN, datatype="BYTES", shape=[n])
    words = [str(r[CATEGORICAL_COLUMN]).encode() for r in records]
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(w)) + w for w in words))
    message = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_bodies(folder: Path, records: dict[str, list[dict[str, Any]]]) -> dict[str, Body]:
    """A gRPC body beside each HTTP one (``records``: the HTTP bodies' records by name)."""
    out = {}
    for name, rows in records.items():
        path = folder / f"{len(rows)}.grpc"
        path.write_bytes(framed_call(rows))
        out[name + GRPC] = Body(name + GRPC, path, len(rows))
    return out


def answered(url: str) -> dict[str, float]:
    """ModelInfer calls answered so far, by status code name, from the server's /metrics."""
    prefix = f'housing_requests_total{{route="{INFER}",status="'
    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(prefix):
            status, _, value = line[len(prefix) :].partition('"} ')
            out[status] = float(value)
    return out


def run_h2load(
    h2load: str, target: str, body: Path, concurrency: int, seconds: int, core: str | None
) -> tuple[int, float, list[int]]:
    """(calls completed with HTTP 200, seconds measured, each call's latency in us)."""
    pin = ["taskset", "-c", core] if core is not None else []
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        out = subprocess.run(
            [
                *pin,
                *(h2load, "-t1", f"-c{concurrency}", "-m1", f"-D{seconds}"),
                *("-d", str(body), "--log-file", log.name),
                *("-H", "content-type: application/grpc", "-H", "te: trailers"),
                f"http://{target}/inference.GRPCInferenceService/ModelInfer",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        latencies = [
            int(fields[2])
            for fields in (line.split("\t") for line in Path(log.name).read_text().splitlines())
            if len(fields) == 3 and fields[1] == "200"
        ]
    finished = next(line for line in out.splitlines() if line.startswith("finished in"))
    elapsed = float(finished.split()[2].rstrip("s,"))
    return len(latencies), elapsed, latencies


def measure_grpc(
    h2load: str, server: Any, body: Body, concurrency: int, seconds: int, core: str | None
) -> Result:
    """One gRPC point on ``server`` (a ``benchmarks.load.Server`` with ``grpc_target``)."""
    run_h2load(h2load, server.grpc_target, body.file, min(concurrency, 8), 1, core)  # warm up
    before = answered(server.url)
    device_before = device_totals(server.url)
    cpu_before = server.cpu_seconds()
    calls, elapsed, latencies = run_h2load(
        h2load, server.grpc_target, body.file, concurrency, seconds, core
    )
    cpu = server.cpu_seconds() - cpu_before
    device_us_per_row, rows_per_call = device_figures(device_before, device_totals(server.url))
    after = answered(server.url)
    # Calls the server answered with another status than OK. CANCELLED is h2load hanging up
    # on the calls still in flight when its time is over, not an error of the server's.
    errors = sum(
        n - before.get(status, 0.0)
        for status, n in after.items()
        if status not in ("OK", "CANCELLED")
    )
    served = after.get("OK", 0.0) - before.get("OK", 0.0)
    p50, p99 = (np.percentile(latencies, [50, 99]) / 1000).tolist() if latencies else (0, 0)
    return Result(
        server.name,
        body.name,
        concurrency,
        calls / elapsed,
        p50,
        p99,
        int(errors),
        body.rows,
        cpu / max(served, 1) * 1e6,
        device_us_per_row,
        rows_per_call,
    )
