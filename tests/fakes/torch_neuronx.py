"""FakeTorchNeuronx: a test seam standing in for the ``torch_neuronx`` module.

It records every ``trace`` call (so tests can check that compile uses the documented keyword
API, and list the operators of exactly the module it was handed) and produces a CPU TorchScript
graph at the traced shape, like the real one produces a Neuron graph. ``refuse`` makes it fail
like neuronx-cc on an operator it does not support: the error line in ``log-neuron-cc.txt``
in the compiler work directory, and ``RuntimeError: neuronx-cc failed with 70`` from trace.
It proves our code's side of the contract only: nothing here ran on Inferentia.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compile.operators import HLO_NAMES, graph_operators
from modelspec import torchscript

_XLA_NAME = {aten: hlo for hlo, aten in HLO_NAMES.items()}


@dataclass
class FakeTorchNeuronx:
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Added to every output, to simulate a compiler that changes the numbers.
    output_shift: float = 0.0
    # aten operators this compiler refuses (e.g. {"aten::sin"}), as neuronx-cc may.
    refuse: frozenset[str] = frozenset()

    def trace(
        self,
        func: torch.nn.Module,
        example_inputs: torch.Tensor,
        *_: Any,
        compiler_workdir: str | None = None,
        compiler_args: list[str] | None = None,
        **kwargs: Any,
    ) -> torch.jit.ScriptModule:
        self.calls.append(
            {
                "func": func,
                "shape": tuple(example_inputs.shape),
                "compiler_workdir": compiler_workdir,
                "compiler_args": compiler_args,
                **kwargs,
            }
        )
        refused = sorted(set(graph_operators(func, example_inputs)) & self.refuse)
        if refused:
            self._fail(refused[0], compiler_workdir)
        shift = self.output_shift

        class _Shifted(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = func

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x) + shift

        with torch.no_grad():
            return torchscript.trace(_Shifted().eval(), example_inputs)

    @staticmethod
    def _fail(operator: str, workdir: str | None) -> None:
        """What neuronx-cc does on an unsupported operator: an NCC_EVRF001 line in its log,
        naming the operator as XLA does, and a non-zero exit that trace turns into this."""
        name = _XLA_NAME.get(operator, operator.removeprefix("aten::"))
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            (Path(workdir) / "log-neuron-cc.txt").write_text(
                "2026-11-29T00:00:00Z INFO 4242 [root]: Compiling (FakeTorchNeuronx)\n"
                f"2026-11-29T00:00:01Z ERROR 4242 [neuronx-cc]: [NCC_EVRF001] Operator {name} "
                "is not supported. Locate the operator in source or libraries and replace it.\n"
            )
        raise RuntimeError("neuronx-cc failed with 70")
