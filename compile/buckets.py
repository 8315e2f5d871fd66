"""The TorchScript modules that make up ``model_neuron.pt``.

* ``BucketDispatch`` holds one compiled graph per batch size ("bucket"): Neuron graphs have
  static shapes, so compile traces the device graph once per size and this picks the graph whose
  size equals the input's first dimension. The server pads every batch to one of ``sizes``
  (recorded in the manifest), so the lookup never misses in service.
* ``Artifact`` is the file's top module: ``preamble`` (CPU TorchScript, or an identity when the
  features run on the device) and then ``body`` (the device graph). Its ``forward`` is the
  whole model, so the server needs no setting to follow the placement; both parts stay
  reachable by name for timing and for the XLA backend.
"""

import torch
from torch import Tensor, nn

from modelspec import torchscript


class BucketDispatch(nn.Module):
    # No class-level annotations: TorchScript infers ``sizes`` as List[int] from the value.

    def __init__(self, graphs: list[nn.Module], sizes: list[int]) -> None:
        super().__init__()
        if len(graphs) != len(sizes):
            raise ValueError("one graph per batch size")
        self.graphs = nn.ModuleList(graphs)
        self.sizes = sizes

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        for i, graph in enumerate(self.graphs):
            if self.sizes[i] == n:
                return graph(x)
        raise RuntimeError("no compiled graph for this batch size; pad to a bucket first")


class Artifact(nn.Module):
    def __init__(self, preamble: nn.Module, body: nn.Module) -> None:
        super().__init__()
        self.preamble = preamble
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.preamble(x))


def script_buckets(graphs: list[nn.Module], sizes: list[int]) -> torch.jit.ScriptModule:
    return torchscript.script(BucketDispatch(graphs, sizes))


def script_artifact(preamble: nn.Module, body: nn.Module) -> torch.jit.ScriptModule:
    return torchscript.script(Artifact(preamble, body))
