"""One record, one price: the same row gets the same answer in any batch.

A float32 matrix product need not add in the same order for every batch size: BLAS picks one
kernel for a single row (a matrix-vector product), others for two or three, another from four
rows on; a compiled device graph is a separate program per batch size. The answers then differ
in their last bit -- a float32 step is 2**-5 dollars from $262,144 to $524,288 -- and the same
block is priced differently alone, in a batch of two, or inside a Batch Transform body.

No rounding can hide a difference in the last bit (a value just below a half cent rounds one
way, a bit higher the other), so the rows are made to run through the same arithmetic
instead. ``probe`` finds, on this device and this artifact, the smallest batch size from which
every size up to the largest answers a set of probe rows bit for bit like the largest does,
at several positions in the batch; ``Consistent`` then pads every smaller device call up to it
with zero rows, whose answers are sliced off: a lone request pays for the padded rows' device
time. Where only the largest size agrees (a device whose programs differ per size), every
call runs at that one compiled shape.

The probe runs once at load (after warm-up, before the model serves), for the server and for
``python -m app.score`` alike, so both price a record the same; its answer is logged.
"""

from __future__ import annotations

import logging

import numpy as np

from app.backends.base import Backend
from modelspec.features import NUMERIC_COLUMNS

logger = logging.getLogger("housing.runtime")

# Probe rows: the manifest's reference rows, each scaled by this many factors close to 1 (so
# they stay realistic inputs and exercise different low bits).
PROBE_COPIES = 16
# Batch sizes tried besides the compiled ones, for a backend that takes any size.
DYNAMIC_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 17, 24, 31, 33, 48, 63)


class Consistent:
    """``backend`` with every call of fewer than ``min_rows`` rows padded up to it."""

    def __init__(self, backend: Backend, min_rows: int) -> None:
        self.backend = backend
        self.device = backend.device
        self.batch_sizes = backend.batch_sizes
        self.dynamic_batch = backend.dynamic_batch
        self.min_rows = min_rows

    def predict(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n >= self.min_rows:
            return self.backend.predict(x)
        padded = np.zeros((self.min_rows, x.shape[1]), dtype=x.dtype)
        padded[:n] = x
        return self.backend.predict(padded)[:n]


def probe_rows(reference: np.ndarray) -> np.ndarray:
    """Realistic rows that are not all alike: each reference row scaled by factors near 1 on
    its numeric columns (the one-hot columns are kept)."""
    factors = np.linspace(0.97, 1.03, PROBE_COPIES, dtype=np.float32)
    rows = np.repeat(reference, PROBE_COPIES, axis=0)
    numeric = len(NUMERIC_COLUMNS)  # the one-hot of ocean_proximity follows them
    rows[:, :numeric] *= np.tile(factors, len(reference))[:, None]
    return rows


def _answers(backend: Backend, rows: np.ndarray, size: int, shift: int) -> np.ndarray:
    """Every row's answer when the rows, rolled by ``shift``, run ``size`` at a time (the last
    call padded with zero rows to ``size``)."""
    n = len(rows)
    padded = np.zeros((-(-n // size) * size, rows.shape[1]), dtype=rows.dtype)
    padded[:n] = np.roll(rows, shift, axis=0)
    out = np.concatenate(
        [backend.predict(padded[i : i + size]) for i in range(0, len(padded), size)]
    )
    return np.roll(out[:n], -shift, axis=0)


def probe(backend: Backend, reference: np.ndarray) -> int:
    """The smallest batch size from which every size answers like the largest, bit for bit
    (the largest compiled size when none smaller does): sizes are tried from the largest
    down, until one disagrees."""
    largest = backend.batch_sizes[-1]
    extra = DYNAMIC_SIZES if backend.dynamic_batch else ()
    sizes = sorted({*backend.batch_sizes, *(s for s in extra if s < largest)}, reverse=True)
    rows = probe_rows(reference)
    want = _answers(backend, rows, largest, 0)
    min_rows = largest
    for size in sizes[1:]:
        for shift in (0, size // 2 + 1):
            if not np.array_equal(_answers(backend, rows, size, shift), want, equal_nan=True):
                return min_rows
        min_rows = size
    return min_rows


def consistent(backend: Backend, reference: np.ndarray) -> Consistent:
    """``backend`` wrapped so that a row's answer does not depend on its batch (``probe``)."""
    min_rows = probe(backend, reference)
    if min_rows > 1:
        logger.info(
            "device calls of fewer than %d rows are padded to %d: below that, %s answers a "
            "row differently by batch size",
            min_rows,
            min_rows,
            backend.device,
        )
    return Consistent(backend, min_rows)
