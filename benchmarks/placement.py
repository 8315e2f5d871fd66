"""The host preamble and the device body of the artifact, timed apart, per batch size.

    python -m benchmarks.placement                  # HOUSING_ARTIFACTS (default artifacts/)
    python -m benchmarks.placement --sizes 1,8,64 --calls 5000

On a NeuronCore the preamble (derived features, normalisation) is host CPU work added to every
device call; this prints what it costs here, beside the body and the whole call, on one torch
thread (the server's default). ``make neuron-check`` times the same parts on an inf2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from modelspec import torchscript
from modelspec.buckets import parse_buckets
from modelspec.manifest import ARTIFACT_FILE, VALIDATION_FILE


def time_calls(fn: Callable[[Tensor], object], x: Tensor, calls: int) -> tuple[float, float]:
    """p50 and p99 of ``fn(x)`` in microseconds over ``calls`` calls, after a warm-up."""
    with torch.no_grad():
        for _ in range(min(calls, 50)):
            fn(x)
        samples = np.empty(calls)
        for i in range(calls):
            started = time.perf_counter_ns()
            fn(x)
            samples[i] = time.perf_counter_ns() - started
    p50, p99 = np.percentile(samples, [50, 99]) / 1000
    return float(p50), float(p99)


def first_rows(rows: Tensor, size: int) -> Tensor:
    """The first ``size`` of ``rows`` (repeated if there are fewer)."""
    return rows.repeat((size + len(rows) - 1) // len(rows), 1)[:size].contiguous()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.placement", description=__doc__)
    p.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
    )
    p.add_argument("--sizes", type=parse_buckets, default=(1, 8, 64))
    p.add_argument("--calls", type=int, default=5000)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    module = torchscript.load(args.artifacts / ARTIFACT_FILE, map_location="cpu").eval()
    if not hasattr(module, "preamble"):
        print("error: the artifact has no preamble; re-run `python -m compile`", file=sys.stderr)
        return 2
    rows = torch.load(args.artifacts / VALIDATION_FILE, map_location="cpu", weights_only=True)
    print(f"{'rows':>5} {'preamble p50 us':>16} {'body p50 us':>12} {'whole p50 us':>13}")
    for size in args.sizes:
        x = first_rows(rows, size)
        with torch.no_grad():
            features = module.preamble(x)
        pre = time_calls(module.preamble, x, args.calls)[0]
        body = time_calls(module.body, features, args.calls)[0]
        whole = time_calls(module, x, args.calls)[0]
        print(f"{size:>5} {pre:>16.1f} {body:>12.1f} {whole:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
