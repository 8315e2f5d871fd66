"""Static-shape batching: pad a batch to the nearest compiled size and slice the result back.

Neuron (and XLA) graphs run only at the batch sizes they were compiled for. Compile uses this
to check every bucket against the eager model; the server uses it for every device call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def parse_buckets(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``: sorted, unique, positive."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"batch buckets must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch buckets must be positive integers, got {text!r}")
    return tuple(sizes)


def default_buckets() -> tuple[int, ...]:
    """``HOUSING_BATCH_BUCKETS`` if set, else ``DEFAULT_BUCKETS``."""
    text = os.environ.get("HOUSING_BATCH_BUCKETS")
    return parse_buckets(text) if text else DEFAULT_BUCKETS


def bucket_for(n: int, sizes: Sequence[int]) -> int:
    """The smallest size that holds ``n`` rows (``sizes`` sorted ascending, ``n`` <= the last)."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} rows exceed the largest bucket {sizes[-1]}")


def run_bucketed(fn: Callable[[Tensor], Tensor], x: Tensor, sizes: Sequence[int]) -> Tensor:
    """Run ``fn`` over ``x`` in chunks of at most the largest bucket, each padded to a bucket.

    Padding repeats zeros; the padded rows' outputs are sliced off, so they never reach a
    caller. The result count is checked: a graph that returns the wrong number of rows is a
    bug to surface, not to slice around.
    """
    largest = sizes[-1]
    outputs = []
    for start in range(0, x.shape[0], largest):
        chunk = x[start : start + largest]
        n = chunk.shape[0]
        size = bucket_for(n, sizes)
        if size != n:
            chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
        out = fn(chunk)
        if out.shape[0] != size:
            raise RuntimeError(f"graph returned {out.shape[0]} rows for a batch of {size}")
        outputs.append(out[:n])
    return torch.cat(outputs) if outputs else x.new_zeros((0,))
