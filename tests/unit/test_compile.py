"""Compile on real artifacts: the cpu target, and the neuron target through FakeTorchNeuronx."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.backends.neuron import NeuronBackend
from compile.errors import CompileError, CompilerRefused
from compile.neuron import neuron_compiler
from compile.operators import DOCUMENTED, graph_operators, undocumented
from compile.targets import compile_artifacts
from modelspec import torchscript
from modelspec.features import N_DERIVED, N_ENCODED
from modelspec.intervals import LOG_SCALE_TOLERANCE
from modelspec.manifest import ARTIFACT_FILE, CHECKPOINT_FILE, VALIDATION_FILE, Manifest
from modelspec.network import HousingNet
from modelspec.placement import Body
from tests.fakes.torch_neuronx import FakeTorchNeuronx
from tests.support.operators import FEATURE_OPERATORS


@pytest.fixture
def folder(artifacts: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    (copy / ARTIFACT_FILE).unlink()
    return copy


def _eager(folder: Path) -> HousingNet:
    return HousingNet.from_checkpoint(torch.load(folder / CHECKPOINT_FILE, weights_only=True))


def _expected(folder: Path, rows: torch.Tensor) -> np.ndarray:
    """The eager model's ``(n, 2)``: dollars, and the log of each row's scale in dollars."""
    model = _eager(folder)
    with torch.no_grad():
        return torch.stack((model(rows), model.log_scale(rows)), dim=1).double().numpy()


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
    assert compiled.features_on == "host"
    assert compiled.device_operators == ["aten::addmm", "aten::relu", "aten::t"]
    assert compiled.max_abs_diff <= compiled.tolerance
    assert 0 <= compiled.max_log_scale_diff <= LOG_SCALE_TOLERANCE
    assert Manifest.load(folder) == manifest
    assert len(compiled.reference_inputs) == len(compiled.reference_outputs) == 8
    assert len(compiled.reference_log_scales) == 8


def test_the_cpu_artifact_is_a_host_preamble_and_a_device_body(folder: Path) -> None:
    compile_artifacts(folder, "cpu", (1,))
    module = torchscript.load(folder / ARTIFACT_FILE)
    rows = torch.load(folder / VALIDATION_FILE, weights_only=True)[:5]
    with torch.no_grad():
        features = module.preamble(rows)
        assert features.shape == (5, N_DERIVED)
        torch.testing.assert_close(module.body(features), module(rows), rtol=0, atol=0)


def test_neuron_target_uses_the_documented_keyword_api(folder: Path) -> None:
    fake = FakeTorchNeuronx()
    manifest = compile_artifacts(folder, "neuron", (1, 4, 8), neuronx=fake, workdir=folder / "w")
    # By default the NeuronCore gets the body: normalised features in, dollars out.
    assert [c["shape"] for c in fake.calls] == [(1, N_DERIVED), (4, N_DERIVED), (8, N_DERIVED)]
    assert fake.calls[0]["compiler_workdir"] == str(folder / "w" / "batch1")
    assert fake.calls[0]["compiler_args"] == ["--auto-cast", "none"]
    compiled = manifest.compiled
    assert compiled is not None
    assert compiled.input_shapes == [[1, N_ENCODED], [4, N_ENCODED], [8, N_ENCODED]]
    assert not compiled.dynamic_batch
    assert compiled.features_on == "host"


def test_only_documented_operators_reach_the_neuroncore_by_default(folder: Path) -> None:
    fake = FakeTorchNeuronx()
    compile_artifacts(folder, "neuron", (1, 8), neuronx=fake)
    for call in fake.calls:  # exactly what was handed to torch_neuronx.trace
        operators = graph_operators(call["func"], torch.zeros(call["shape"]))
        assert operators == ["aten::addmm", "aten::relu", "aten::t"]
        assert set(operators) <= DOCUMENTED


def test_a_sin_put_back_into_the_device_graph_is_caught(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forward_with_sin(self: Body, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.layers(x)).view(-1)

    monkeypatch.setattr(Body, "forward", forward_with_sin)
    fake = FakeTorchNeuronx()
    with pytest.raises(CompileError, match=r"uses aten::sin, which AWS's operator list"):
        compile_artifacts(folder, "neuron", (1,), neuronx=fake)
    assert fake.calls == []  # refused before anything reached the compiler
    assert not (folder / ARTIFACT_FILE).exists()


def test_features_device_hands_the_whole_graph_and_names_what_is_outside(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTorchNeuronx()
    manifest = compile_artifacts(folder, "neuron", (1, 4), neuronx=fake, features_on="device")
    assert [c["shape"] for c in fake.calls] == [(1, N_ENCODED), (4, N_ENCODED)]
    handed = graph_operators(fake.calls[0]["func"], torch.zeros(1, N_ENCODED))
    assert undocumented(handed) == FEATURE_OPERATORS
    compiled = manifest.compiled
    assert compiled is not None
    assert (compiled.features_on, compiled.device_operators) == ("device", handed)
    assert f"hands the NeuronCore {', '.join(FEATURE_OPERATORS)}" in capsys.readouterr().err
    # The artifact's forward follows the placement: an identity preamble, the whole graph after.
    backend = NeuronBackend(folder / ARTIFACT_FILE, compiled, neuronx=fake)
    rows = torch.load(folder / VALIDATION_FILE, weights_only=True)[:6]
    np.testing.assert_allclose(backend.predict(rows.numpy()), _expected(folder, rows), rtol=1e-5)


def test_a_refused_operator_is_named_and_the_default_still_compiles(folder: Path) -> None:
    refusing = FakeTorchNeuronx(refuse=frozenset({"aten::sin"}))
    with pytest.raises(CompilerRefused, match=r"Hint: compile with `--features host`") as caught:
        compile_artifacts(folder, "neuron", (1,), neuronx=refusing, features_on="device")
    assert caught.value.operator == "sine (aten::sin)"
    assert "neuronx-cc failed with 70" in str(caught.value)
    assert "[NCC_EVRF001] Operator sine is not supported" in caught.value.detail
    manifest = compile_artifacts(folder, "neuron", (1,), neuronx=refusing)
    assert manifest.compiled is not None and manifest.compiled.features_on == "host"


def test_features_device_is_a_neuron_choice(folder: Path) -> None:
    with pytest.raises(CompileError, match="applies to --target neuron only"):
        compile_artifacts(folder, "cpu", (1,), features_on="device")


def test_the_neuron_artifact_serves_every_batch_size_like_the_eager_model(folder: Path) -> None:
    manifest = compile_artifacts(folder, "neuron", (1, 4, 8), neuronx=FakeTorchNeuronx())
    assert manifest.compiled is not None
    backend = NeuronBackend(folder / ARTIFACT_FILE, manifest.compiled, neuronx=FakeTorchNeuronx())
    rows = torch.load(folder / VALIDATION_FILE, weights_only=True)[:21]
    expected = _expected(folder, rows)
    for n in (1, 3, 8, 21):  # exact bucket, padded, split across calls
        np.testing.assert_allclose(backend.predict(rows[:n].numpy()), expected[:n], rtol=1e-5)


def test_the_bucketed_artifact_refuses_an_unpadded_batch(folder: Path) -> None:
    compile_artifacts(folder, "neuron", (2,), neuronx=FakeTorchNeuronx())
    module = torchscript.load(folder / ARTIFACT_FILE)
    with pytest.raises(torch.jit.Error, match="pad to a bucket"):
        module(torch.zeros(3, N_ENCODED))


def test_a_compiled_graph_off_by_more_than_the_tolerance_is_not_written(folder: Path) -> None:
    before = Manifest.load(folder)
    with pytest.raises(CompileError, match=r"differs from the eager model by \$5\.\d+"):
        compile_artifacts(folder, "neuron", (1,), neuronx=FakeTorchNeuronx(output_shift=5.0))
    assert not (folder / ARTIFACT_FILE).exists()
    assert Manifest.load(folder) == before


def test_without_torch_neuronx_the_error_says_what_to_install() -> None:
    with pytest.raises(CompileError, match="Hint: .*Neuron package index.*--target cpu"):
        neuron_compiler()
