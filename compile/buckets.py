"""One TorchScript module that holds a compiled graph per batch size ("bucket").

Neuron graphs have static shapes, so compile traces the model once per batch size and this
wrapper picks the graph whose size equals the input's first dimension. The server pads every
batch to one of ``sizes`` (recorded in the manifest), so the lookup never misses in service.
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


def script_buckets(graphs: list[nn.Module], sizes: list[int]) -> torch.jit.ScriptModule:
    return torchscript.script(BucketDispatch(graphs, sizes))
