"""One record, one price in any batch (``app.backends.consistent``), on the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.backends.consistent import Consistent, probe
from app.core.intervals import log_scale_range, prices
from app.core.served import load_model
from app.settings import Settings
from modelspec.manifest import Manifest

SIZES = (1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 33, 64)


@pytest.fixture(scope="module")
def loaded(artifacts: Path) -> tuple[Manifest, Consistent]:
    manifest, _, backend = load_model(Settings(artifacts=artifacts, device="cpu"))
    assert isinstance(backend, Consistent)
    return manifest, backend


def test_every_validation_row_gets_the_same_price_at_every_batch_size(
    artifacts: Path, loaded: tuple[Manifest, Consistent]
) -> None:
    manifest, backend = loaded
    rows = torch.load(artifacts / "validation_sample.pt", weights_only=True).numpy()
    clamp = log_scale_range(manifest.intervals)

    def at(size: int) -> np.ndarray:
        return np.concatenate(
            [prices(backend.predict(rows[i : i + size]), clamp) for i in range(0, len(rows), size)]
        )

    want = at(64)
    for size in SIZES:
        got = at(size)
        assert np.array_equal(got, want), f"batch {size}: {np.sum(got != want)} values differ"


class SizeDependent:
    """A device whose answers move in the last place below ``exact`` rows, as BLAS does."""

    device = "cpu"
    batch_sizes = (1, 2, 4, 8, 16)

    def __init__(self, exact: int, dynamic: bool) -> None:
        self.exact = exact
        self.dynamic_batch = dynamic

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = x.sum(axis=1).astype(np.float32)
        if len(x) < self.exact:
            out = np.nextafter(out, np.float32(np.inf))
        return out.astype(np.float64)


@pytest.mark.parametrize(("exact", "static"), [(1, True), (4, False), (8, True), (16, False)])
def test_the_probe_finds_the_size_from_which_answers_agree(
    loaded: tuple[Manifest, Consistent], exact: int, static: bool
) -> None:
    manifest, _ = loaded
    assert manifest.compiled is not None
    reference = np.asarray(manifest.compiled.reference_inputs, dtype=np.float32)
    device = SizeDependent(exact, dynamic=not static)
    found = probe(device, reference)
    assert found == exact
    padded = Consistent(device, found)
    one = reference[:1]
    assert padded.predict(one)[0] == device.predict(np.repeat(one, 16, axis=0))[0]
