"""TorchScript calls in one place, with torch's deprecation warnings silenced on purpose.

TorchScript is deprecated upstream since torch 2.11 in favour of ``torch.export``, and each
``torch.jit`` call now warns. It is still the format ``torch_neuronx.trace`` produces and
``torch.jit.load`` places on a NeuronCore, and the one file format this project ships for every
target, so it stays until the Neuron SDK's native (torch.export-based) path is adopted. Keeping
the calls here means that migration touches one module, and tests can keep warnings as errors.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


@contextmanager
def torchscript_allowed() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED, category=DeprecationWarning)
        yield


def trace(fn: Any, example: torch.Tensor) -> torch.jit.ScriptModule:
    with torchscript_allowed():
        traced = torch.jit.trace(fn, example)
    assert isinstance(traced, torch.jit.ScriptModule)
    return traced


def script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with torchscript_allowed():
        scripted = torch.jit.script(module)
    assert isinstance(scripted, torch.jit.ScriptModule)
    return scripted


def save(module: torch.jit.ScriptModule, path: Path) -> None:
    """Write ``module`` to ``path``: the same module gives the same bytes whatever the path is
    called (torch.jit.save names the archive's folder after the file; through a buffer it is
    always ``archive``), so a compile's sha256 and model version depend on the model only."""
    buffer = io.BytesIO()
    with torchscript_allowed():
        torch.jit.save(module, buffer)
    path.write_bytes(buffer.getvalue())


def load(path: Path, map_location: str | None = None) -> torch.jit.ScriptModule:
    with torchscript_allowed():
        module = torch.jit.load(str(path), map_location=map_location)
    assert isinstance(module, torch.jit.ScriptModule)
    return module
