"""Tracing the eager model for a target, checking it, and recording it in the manifest.

Every target compiles the same split (``modelspec/placement.py``): a host preamble (derived
features, normalisation) and a device body (Linear and ReLU). The cpu artifact runs both parts
as TorchScript on the CPU, so ``make test`` checks, on every run, the very arithmetic a
NeuronCore is handed; only the Neuron compiler itself is out of reach here.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from compile.buckets import script_artifact
from compile.errors import CompileError, ParityError
from compile.neuron import DEFAULT_NEURON_ARGS, device_graph, neuron_compiler, trace_neuron
from modelspec import torchscript
from modelspec.buckets import run_bucketed
from modelspec.features import N_ENCODED
from modelspec.intervals import LOG_SCALE_TOLERANCE
from modelspec.manifest import (
    ARTIFACT_FILE,
    CHECKPOINT_FILE,
    VALIDATION_FILE,
    ArtifactError,
    CompiledInfo,
    FeaturesOn,
    Manifest,
    Target,
    sha256_file,
)
from modelspec.network import HousingNet
from modelspec.placement import Body, Preamble, split

# Largest |compiled - eager| allowed on the validation sample, in dollars (on values around
# $200k this is a relative difference of about 5e-6).
DEFAULT_TOLERANCE = 1.0
# Validation rows recorded in the manifest for the server's warm-up check.
REFERENCE_ROWS = 8


def load_eager(folder: Path) -> tuple[HousingNet, Manifest]:
    manifest = Manifest.load(folder)
    manifest.check_feature_hash()
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise ArtifactError(f"no {CHECKPOINT_FILE} in {folder}", "run `python -m training`.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return HousingNet.from_checkpoint(checkpoint), manifest


def trace_cpu(preamble: Preamble, body: Body, example: Tensor) -> torch.jit.ScriptModule:
    """Portable TorchScript: both parts traced once, and both accept any batch size."""
    with torch.no_grad():
        host = torchscript.trace(preamble, example)
        device = torchscript.trace(body, preamble(example))
    return script_artifact(host, device)


@torch.no_grad()
def parity_by_bucket(
    compiled: Callable[[Tensor], Tensor],
    model: HousingNet,
    rows: Tensor,
    batch_sizes: tuple[int, ...],
) -> tuple[dict[int, float], float]:
    """Largest |compiled - eager| in dollars at each batch size, over all of ``rows`` (cut
    into calls of that size, the last one padded); and, for a model with a scale head, the
    largest |compiled - eager| of the log-scales over every size (0 without one)."""
    expected = model(rows).double()
    log_scale = None if model.scale_head is None else model.log_scale(rows).double()
    worst, worst_log = {}, 0.0
    for size in batch_sizes:
        got = run_bucketed(compiled, rows, (size,)).double()
        if log_scale is None:
            worst[size] = float((got - expected).abs().max())
            continue
        if got.dim() != 2:
            raise ParityError(
                "the model has a scale head but the compiled graph returns one value per row. "
                "Hint: this is a bug in modelspec/placement.py: please report it."
            )
        worst[size] = float((got[:, 0] - expected).abs().max())
        worst_log = max(worst_log, float((got[:, 1] - log_scale).abs().max()))
    return worst, worst_log


def compile_artifacts(
    folder: Path,
    target: Target,
    batch_sizes: tuple[int, ...],
    tolerance: float = DEFAULT_TOLERANCE,
    compiler_args: list[str] | None = None,
    workdir: Path | None = None,
    neuronx: Any = None,
    features_on: FeaturesOn = "host",
) -> Manifest:
    """Trace, check against the eager model, write ``model_neuron.pt``, update the manifest."""
    if target == "cpu" and features_on != "host":
        raise CompileError(
            "--features device chooses what the NeuronCore compiles; it applies to --target "
            "neuron only (the cpu artifact runs every part on the CPU). Hint: drop --features."
        )
    model, manifest = load_eager(folder)
    rows = torch.load(folder / VALIDATION_FILE, map_location="cpu", weights_only=True)
    preamble, body = split(model)
    graph = device_graph(preamble, body, features_on)
    args: list[str] = []
    if target == "neuron":
        args = list(compiler_args if compiler_args is not None else DEFAULT_NEURON_ARGS)
        neuronx = neuronx if neuronx is not None else neuron_compiler()
        if graph.undocumented and features_on == "host":
            raise CompileError(
                f"the NeuronCore graph uses {', '.join(graph.undocumented)}, which AWS's "
                "operator list does not name; nothing was compiled. Hint: this is a bug in "
                "modelspec/placement.py (the body must be Linear and ReLU only): please report it."
            )
        if graph.undocumented:
            print(
                f"warning: --features device hands the NeuronCore {', '.join(graph.undocumented)}"
                ", which AWS's operator list does not name; if neuronx-cc refuses one, compile "
                "with --features host (the default)",
                file=sys.stderr,
            )
        workdir = workdir or folder / "neuron-work"
        compiled = trace_neuron(graph, preamble, batch_sizes, args, workdir, neuronx)
        input_shapes = [[b, N_ENCODED] for b in batch_sizes]
    else:
        compiled = trace_cpu(preamble, body, rows[:1])
        input_shapes = [[-1, N_ENCODED]]

    diffs, log_diff = parity_by_bucket(compiled, model, rows, batch_sizes)
    diff = max(diffs.values())
    print(f"max |compiled - eager| over {len(rows)} validation rows: ${diff:.6f}")
    if not diff <= tolerance:  # also refuses NaN
        raise ParityError(
            f"the compiled model differs from the eager model by ${diff:.4f} (tolerance "
            f"${tolerance}); nothing was written. Hint: check compiler args that change "
            "precision (e.g. --auto-cast), or raise --tolerance if the difference is expected."
        )
    if not log_diff <= LOG_SCALE_TOLERANCE:
        raise ParityError(
            f"the compiled model's interval scales differ from the eager model's by "
            f"{log_diff:.2e} in log (tolerance {LOG_SCALE_TOLERANCE:g}); nothing was written. "
            "Hint: check compiler args that change precision (e.g. --auto-cast)."
        )

    reference = rows[:REFERENCE_ROWS]
    with torch.no_grad():
        reference_outputs = run_bucketed(compiled, reference, batch_sizes).double()
    reference_log_scales: list[float] = []
    if reference_outputs.dim() == 2:
        reference_log_scales = reference_outputs[:, 1].tolist()
        reference_outputs = reference_outputs[:, 0]

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
                features_on=features_on,
                device_operators=graph.operators,
                compiled_at=datetime.now(UTC).isoformat(timespec="seconds"),
                reference_inputs=reference.tolist(),
                reference_outputs=reference_outputs.tolist(),
                reference_log_scales=reference_log_scales,
                max_log_scale_diff=log_diff,
            )
        }
    )
    updated.save(folder)
    return updated
