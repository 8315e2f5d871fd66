"""A model trained under the default torch compiles and serves under torch 2.9 (Python 3.12):
what an inf2 user does with the Neuron SDK's torch. The Neuron compiler is the named fake."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from app.backends.neuron import NeuronBackend
from compile.operators import graph_operators
from compile.targets import compile_artifacts, load_eager
from modelspec.manifest import ARTIFACT_FILE, VALIDATION_FILE, Manifest
from tests.fakes.torch_neuronx import FakeTorchNeuronx


def test_the_artifacts_cross_torch_versions(artifacts: Path) -> None:
    manifest = Manifest.load(artifacts)
    assert manifest.compiled is not None
    print(
        f"trained under torch {manifest.training.torch_version}, compiled under "
        f"{manifest.compiled.torch_version} on Python {sys.version.split()[0]}"
    )
    assert manifest.compiled.torch_version == torch.__version__
    assert manifest.training.torch_version.split(".")[:2] != torch.__version__.split(".")[:2]


def test_a_foreign_model_compiles_for_neuron_here_with_parity(
    artifacts: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "neuron"
    folder.mkdir()
    for name in ("model.pt", "manifest.json", VALIDATION_FILE):
        (folder / name).write_bytes((artifacts / name).read_bytes())
    fake = FakeTorchNeuronx()
    sizes = (1, 2, 4, 8, 16, 32, 64)
    manifest = compile_artifacts(folder, "neuron", sizes, neuronx=fake)
    for call in fake.calls:
        operators = graph_operators(call["func"], torch.zeros(call["shape"]))
        assert operators == ["aten::addmm", "aten::relu", "aten::t"]
    assert manifest.compiled is not None
    backend = NeuronBackend(folder / ARTIFACT_FILE, manifest.compiled, neuronx=fake)
    model, _ = load_eager(folder)
    rows = torch.load(folder / VALIDATION_FILE, weights_only=True)[:100]
    with torch.no_grad():
        expected = model(rows).double().numpy()
        log_scales = model.log_scale(rows).double().numpy()
    for n in (*sizes, 100):  # every bucket, and a request split across calls
        got = backend.predict(rows[:n].numpy())
        np.testing.assert_allclose(got[:, 0], expected[:n], rtol=1e-5)
        assert float(np.abs(got[:, 0] - expected[:n]).max()) <= manifest.compiled.tolerance
        assert float(np.abs(got[:, 1] - log_scales[:n]).max()) <= 1e-4
