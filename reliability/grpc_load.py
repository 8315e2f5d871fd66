"""The loadcheck's gRPC phase: the Open Inference Protocol over gRPC under concurrency, through
the stock client (``tritonclient.grpc.aio``), every answer checked like the HTTP ones.

Requests are 40% one record, the rest 2-100, as FP64 tensors (the offline model's inputs
exactly; a missing ``total_bedrooms`` is NaN) and BYTES; every answer's price and range (the
server's default coverage) must equal the offline model's for exactly that request's rows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from app.codecs.oip import OUTPUTS
from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS
from reliability.loadcheck import LoadcheckReport, compare
from reliability.workload import Rows

ROUTE = "gRPC ModelInfer"


def grpc_inputs(records: list[dict[str, Any]]) -> list[triton.InferInput]:
    """One tensor per raw feature, as a user of tritonclient builds them."""
    n = len(records)
    out = []
    for name in NUMERIC_COLUMNS:
        values = [np.nan if r[name] is None else r[name] for r in records]
        tensor = triton.InferInput(name, [n], "FP64")
        tensor.set_data_from_numpy(np.asarray(values, np.float64))
        out.append(tensor)
    ocean = triton.InferInput(CATEGORICAL_COLUMN, [n], "BYTES")
    ocean.set_data_from_numpy(np.asarray([r[CATEGORICAL_COLUMN] for r in records], object))
    return [*out, ocean]


def make_grpc_requests(rows: Rows, count: int, seed: int) -> list[tuple[list[Any], np.ndarray]]:
    """``count`` requests (their tensors, and the rows' expected table)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(count):
        size = 1 if rng.random() < 0.4 else int(rng.integers(2, 101))
        idx = rng.choice(len(rows.records), size=size)
        out.append((grpc_inputs([rows.records[i] for i in idx]), rows.expected[idx]))
    return out


async def run_grpc_load(
    target: str, requests: list[tuple[list[Any], np.ndarray]], concurrency: int
) -> LoadcheckReport:
    """Send every request (``concurrency`` at a time, one channel) and check each answer."""
    report = LoadcheckReport(requests=len(requests))
    report.rows = sum(len(expected) for _, expected in requests)
    queue = iter(enumerate(requests))
    client = triton_aio.InferenceServerClient(target)

    async def client_loop() -> None:
        for n, (inputs, expected) in queue:  # one shared iterator: each is taken once
            report.by_route[ROUTE] += 1
            try:
                result = await client.infer("housing", inputs, client_timeout=60)
            except InferenceServerException as exc:
                status = str(exc.status()).removeprefix("StatusCode.")
                report.statuses[status] += 1
                report.wrong.append(f"#{n} {ROUTE}: {status} {exc.message()}")
                continue
            report.statuses["OK"] += 1
            columns = [result.as_numpy(name) for name in OUTPUTS[: expected.shape[1]]]
            if any(c is None for c in columns):
                report.wrong.append(f"#{n} {ROUTE}: outputs missing")
                continue
            got = np.column_stack(columns).astype(np.float64)
            compare(ROUTE, got, expected, report, n)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    finally:
        await client.close()
    report.seconds = time.perf_counter() - started
    return report
