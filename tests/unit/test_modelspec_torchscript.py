"""modelspec.torchscript: a saved module's bytes depend on the module only, so a compile's sha256
(and the model version made from it) is the same for the same model."""

from __future__ import annotations

from pathlib import Path

import torch

from modelspec import torchscript


def test_the_same_module_saves_to_the_same_bytes_under_any_file_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with torchscript.torchscript_allowed():
        module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()))
    first, second = tmp_path / "model_neuron.pt", tmp_path / "tmpq8x1z.pt.tmp"
    torchscript.save(module, first)
    torchscript.save(module, second)
    assert first.read_bytes() == second.read_bytes()
    loaded = torchscript.load(second)
    x = torch.randn(4, 3)
    assert torch.equal(loaded(x), module(x))
