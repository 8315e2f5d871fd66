"""The Neuron target: which graph goes to the NeuronCore, and ``torch_neuronx.trace`` on it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from compile.buckets import script_artifact, script_buckets
from compile.errors import CompileError, CompilerRefused
from compile.operators import graph_operators, undocumented
from modelspec import torchscript
from modelspec.features import N_DERIVED, N_ENCODED
from modelspec.manifest import FeaturesOn, Target
from modelspec.neuron import INSTALL_HINT, NeuronUnavailable, import_torch_neuronx
from modelspec.placement import Body, Preamble

# Keep float32 end to end: neuronx-cc casts matmuls to bf16 by default, which would move
# predictions by hundreds of dollars and fail the parity check against the eager model.
DEFAULT_NEURON_ARGS = ("--auto-cast", "none")


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


@dataclass(frozen=True)
class DeviceGraph:
    """What is handed to the device compiler: the body alone (``features_on="host"``) or the
    preamble and the body in one graph (``"device"``), its input width, its aten operators."""

    module: nn.Module
    features_on: FeaturesOn
    width: int
    operators: list[str]

    @property
    def undocumented(self) -> list[str]:
        return undocumented(self.operators)


def device_graph(preamble: Preamble, body: Body, features_on: FeaturesOn) -> DeviceGraph:
    if features_on == "host":
        module: nn.Module = body
        width = N_DERIVED
    else:
        module, width = nn.Sequential(preamble, body).eval(), N_ENCODED
    return DeviceGraph(module, features_on, width, graph_operators(module, torch.zeros(2, width)))


def compiler_output(exc: BaseException, workdir: Path) -> str:
    """The exception, then the error lines of neuronx-cc's logs in ``workdir``: the trace call
    raises only ``neuronx-cc failed with <code>``; the operator is named in the log."""
    lines = [f"{type(exc).__name__}: {exc}"]
    for log in sorted(workdir.rglob("log-neuron-cc.txt")) if workdir.is_dir() else []:
        text = log.read_text(errors="replace").splitlines()
        lines += [line for line in text if _ERROR_LINE.search(line)][-10:]
    return "\n".join(lines)


_ERROR_LINE = re.compile(r"ERROR|NCC_|not supported|unsupported", re.IGNORECASE)


def trace_neuron(
    graph: DeviceGraph,
    preamble: Preamble,
    batch_sizes: tuple[int, ...],
    compiler_args: list[str],
    workdir: Path,
    neuronx: Any,
) -> torch.jit.ScriptModule:
    """One ``torch_neuronx.trace`` of the device graph per batch size, bundled in a dispatching
    ScriptModule, behind the preamble as CPU TorchScript (an identity when the features are in
    the device graph). A compiler failure becomes ``CompilerRefused`` naming the operator.

    ``neuronx`` is the torch_neuronx module; tests pass a named fake (the test seam) because
    this machine has no Inferentia.
    """
    graphs = []
    for size in batch_sizes:
        try:
            graphs.append(
                neuronx.trace(
                    graph.module,
                    torch.zeros(size, graph.width),
                    compiler_workdir=str(workdir / f"batch{size}"),
                    compiler_args=compiler_args,
                )
            )
        except Exception as exc:  # noqa: BLE001 - the compiler's boundary: report what it said
            detail = compiler_output(exc, workdir / f"batch{size}")
            raise CompilerRefused.from_error(
                detail, graph.features_on, graph.undocumented, size
            ) from exc
    device = script_buckets(graphs, list(batch_sizes))
    if graph.features_on == "device":
        return script_artifact(torchscript.script(nn.Identity()), device)
    with torch.no_grad():
        host = torchscript.trace(preamble, torch.zeros(1, N_ENCODED))
    return script_artifact(host, device)
