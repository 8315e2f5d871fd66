"""Tracing the eager model for a target, checking it, and recording it in the manifest."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from compile.buckets import script_buckets
from modelspec import torchscript
from modelspec.buckets import run_bucketed
from modelspec.features import N_ENCODED
from modelspec.manifest import (
    ARTIFACT_FILE,
    CHECKPOINT_FILE,
    VALIDATION_FILE,
    ArtifactError,
    CompiledInfo,
    Manifest,
    Target,
    sha256_file,
)
from modelspec.network import HousingNet
from modelspec.neuron import INSTALL_HINT, NeuronUnavailable, import_torch_neuronx

# Keep float32 end to end: neuronx-cc casts matmuls to bf16 by default, which would move
# predictions by hundreds of dollars and fail the parity check against the eager model.
DEFAULT_NEURON_ARGS = ("--auto-cast", "none")
# Largest |compiled - eager| allowed on the validation sample, in dollars (on values around
# $200k this is a relative difference of about 5e-6).
DEFAULT_TOLERANCE = 1.0
# Validation rows recorded in the manifest for the server's warm-up check.
REFERENCE_ROWS = 8


class CompileError(Exception):
    """Compilation cannot proceed; the message says how to fix it."""


def neuron_compiler() -> ModuleType:
    """The real torch_neuronx module, or a CompileError that says how to install it."""
    try:
        return import_torch_neuronx()
    except NeuronUnavailable as exc:
        raise CompileError(
            f"--target neuron needs torch-neuronx and neuronx-cc: {exc}. Hint: {INSTALL_HINT}; "
            "or compile a portable artifact with --target cpu."
        ) from exc


def default_target() -> Target:
    """``neuron`` where torch-neuronx imports, else ``cpu``."""
    try:
        import_torch_neuronx()
    except NeuronUnavailable:
        return "cpu"
    return "neuron"


def load_eager(folder: Path) -> tuple[HousingNet, Manifest]:
    manifest = Manifest.load(folder)
    manifest.check_feature_hash()
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise ArtifactError(f"no {CHECKPOINT_FILE} in {folder}", "run `python -m training`.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return HousingNet.from_checkpoint(checkpoint), manifest


def trace_cpu(model: HousingNet, example: Tensor) -> torch.jit.ScriptModule:
    """Portable TorchScript; the traced MLP accepts any batch size."""
    with torch.no_grad():
        return torchscript.trace(model, example)


def trace_neuron(
    model: HousingNet,
    batch_sizes: tuple[int, ...],
    compiler_args: list[str],
    workdir: Path,
    neuronx: Any,
) -> torch.jit.ScriptModule:
    """One ``torch_neuronx.trace`` per batch size, bundled in a dispatching ScriptModule.

    ``neuronx`` is the torch_neuronx module; tests pass a named fake (the test seam) because
    this machine has no Inferentia.
    """
    graphs = []
    for size in batch_sizes:
        example = torch.zeros(size, N_ENCODED)
        graphs.append(
            neuronx.trace(
                model,
                example,
                compiler_workdir=str(workdir / f"batch{size}"),
                compiler_args=compiler_args,
            )
        )
    return script_buckets(graphs, list(batch_sizes))


@torch.no_grad()
def max_abs_diff(
    compiled: torch.jit.ScriptModule,
    model: HousingNet,
    rows: Tensor,
    batch_sizes: tuple[int, ...],
) -> float:
    """Largest |compiled - eager| in dollars, running every bucket over the sample."""
    expected = model(rows)
    worst = 0.0
    for size in batch_sizes:
        got = run_bucketed(compiled, rows, (size,))
        worst = max(worst, float((got.double() - expected.double()).abs().max()))
    return worst


def compile_artifacts(
    folder: Path,
    target: Target,
    batch_sizes: tuple[int, ...],
    tolerance: float = DEFAULT_TOLERANCE,
    compiler_args: list[str] | None = None,
    workdir: Path | None = None,
    neuronx: Any = None,
) -> Manifest:
    """Trace, check against the eager model, write ``model_neuron.pt``, update the manifest."""
    model, manifest = load_eager(folder)
    rows = torch.load(folder / VALIDATION_FILE, map_location="cpu", weights_only=True)
    args: list[str] = []
    if target == "neuron":
        args = list(compiler_args if compiler_args is not None else DEFAULT_NEURON_ARGS)
        neuronx = neuronx if neuronx is not None else neuron_compiler()
        workdir = workdir or folder / "neuron-work"
        compiled = trace_neuron(model, batch_sizes, args, workdir, neuronx)
        input_shapes = [[b, N_ENCODED] for b in batch_sizes]
    else:
        compiled = trace_cpu(model, rows[:1])
        input_shapes = [[-1, N_ENCODED]]

    diff = max_abs_diff(compiled, model, rows, batch_sizes)
    print(f"max |compiled - eager| over {len(rows)} validation rows: ${diff:.6f}")
    if not diff <= tolerance:  # also refuses NaN
        raise CompileError(
            f"the compiled model differs from the eager model by ${diff:.4f} (tolerance "
            f"${tolerance}); nothing was written. Hint: check compiler args that change "
            "precision (e.g. --auto-cast), or raise --tolerance if the difference is expected."
        )

    reference = rows[:REFERENCE_ROWS]
    with torch.no_grad():
        reference_outputs = run_bucketed(compiled, reference, batch_sizes)

    artifact = folder / ARTIFACT_FILE
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".pt.tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    torchscript.save(compiled, tmp_path)
    tmp_path.chmod(0o644)  # NamedTemporaryFile makes 0600; a non-root server must read it
    os.replace(tmp_path, artifact)  # atomic: a server never loads half a file
    updated = manifest.model_copy(
        update={
            "compiled": CompiledInfo(
                artifact=ARTIFACT_FILE,
                sha256=sha256_file(artifact),
                target=target,
                input_shapes=input_shapes,
                batch_sizes=list(batch_sizes),
                dynamic_batch=target == "cpu",
                max_abs_diff=diff,
                tolerance=tolerance,
                torch_version=torch.__version__,
                compiler_args=args,
                compiled_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                reference_inputs=reference.tolist(),
                reference_outputs=reference_outputs.tolist(),
            )
        }
    )
    updated.save(folder)
    return updated
