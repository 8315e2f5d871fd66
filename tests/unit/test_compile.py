"""Compile on real artifacts: the cpu target, and the neuron target through FakeTorchNeuronx."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.backends.neuron import NeuronBackend
from compile.targets import CompileError, compile_artifacts, neuron_compiler
from modelspec import torchscript
from modelspec.features import N_ENCODED
from modelspec.manifest import ARTIFACT_FILE, CHECKPOINT_FILE, VALIDATION_FILE, Manifest
from modelspec.network import HousingNet
from tests.fakes.torch_neuronx import FakeTorchNeuronx


@pytest.fixture
def folder(artifacts: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    (copy / ARTIFACT_FILE).unlink()
    return copy


def _eager(folder: Path) -> HousingNet:
    return HousingNet.from_checkpoint(torch.load(folder / CHECKPOINT_FILE, weights_only=True))


def test_cpu_target_records_the_artifact_in_the_manifest(folder: Path) -> None:
    manifest = compile_artifacts(folder, "cpu", (1, 2, 4))
    compiled = manifest.compiled
    assert compiled is not None
    assert (compiled.target, compiled.dynamic_batch, compiled.batch_sizes) == (
        "cpu",
        True,
        [1, 2, 4],
    )
    assert compiled.input_shapes == [[-1, N_ENCODED]]
    assert compiled.max_abs_diff <= compiled.tolerance
    assert Manifest.load(folder) == manifest
    assert len(compiled.reference_inputs) == len(compiled.reference_outputs) == 8


def test_neuron_target_uses_the_documented_keyword_api(folder: Path) -> None:
    fake = FakeTorchNeuronx()
    manifest = compile_artifacts(folder, "neuron", (1, 4, 8), neuronx=fake, workdir=folder / "w")
    assert [c["shape"] for c in fake.calls] == [(1, N_ENCODED), (4, N_ENCODED), (8, N_ENCODED)]
    assert fake.calls[0]["compiler_workdir"] == str(folder / "w" / "batch1")
    assert fake.calls[0]["compiler_args"] == ["--auto-cast", "none"]
    compiled = manifest.compiled
    assert compiled is not None
    assert compiled.input_shapes == [[1, N_ENCODED], [4, N_ENCODED], [8, N_ENCODED]]
    assert not compiled.dynamic_batch


def test_the_neuron_artifact_serves_every_batch_size_like_the_eager_model(folder: Path) -> None:
    manifest = compile_artifacts(folder, "neuron", (1, 4, 8), neuronx=FakeTorchNeuronx())
    assert manifest.compiled is not None
    backend = NeuronBackend(folder / ARTIFACT_FILE, manifest.compiled, neuronx=FakeTorchNeuronx())
    rows = torch.load(folder / VALIDATION_FILE, weights_only=True)[:21]
    with torch.no_grad():
        expected = _eager(folder)(rows).double().numpy()
    for n in (1, 3, 8, 21):  # exact bucket, padded, split across calls
        np.testing.assert_allclose(backend.predict(rows[:n].numpy()), expected[:n], rtol=1e-5)


def test_the_bucketed_artifact_refuses_an_unpadded_batch(folder: Path) -> None:
    compile_artifacts(folder, "neuron", (2,), neuronx=FakeTorchNeuronx())
    module = torchscript.load(folder / ARTIFACT_FILE)
    with pytest.raises(torch.jit.Error, match="pad to a bucket"):
        module(torch.zeros(3, N_ENCODED))


def test_a_compiled_graph_off_by_more_than_the_tolerance_is_not_written(folder: Path) -> None:
    before = Manifest.load(folder)
    with pytest.raises(CompileError, match=r"differs from the eager model by \$5\.0\d+"):
        compile_artifacts(folder, "neuron", (1,), neuronx=FakeTorchNeuronx(output_shift=5.0))
    assert not (folder / ARTIFACT_FILE).exists()
    assert Manifest.load(folder) == before


def test_without_torch_neuronx_the_error_says_what_to_install() -> None:
    with pytest.raises(CompileError, match="Hint: .*Neuron package index.*--target cpu"):
        neuron_compiler()
