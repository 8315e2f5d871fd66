"""FakeTorchNeuronx: a test seam standing in for the ``torch_neuronx`` module.

It records every ``trace`` call (so tests can check that compile uses the documented keyword
API) and produces a CPU TorchScript graph at the traced shape, like the real one produces a
Neuron graph. It proves our code's side of the contract only: nothing here ran on Inferentia.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from modelspec import torchscript


@dataclass
class FakeTorchNeuronx:
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Added to every output, to simulate a compiler that changes the numbers.
    output_shift: float = 0.0

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
                "shape": tuple(example_inputs.shape),
                "compiler_workdir": compiler_workdir,
                "compiler_args": compiler_args,
                **kwargs,
            }
        )
        shift = self.output_shift

        class _Shifted(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = func

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x) + shift

        with torch.no_grad():
            return torchscript.trace(_Shifted().eval(), example_inputs)
