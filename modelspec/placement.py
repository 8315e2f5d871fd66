"""Where each part of the model runs: a host preamble, then a device body.

torch_neuronx.trace compiles the whole graph it is given and has no CPU fallback, so an
operator that neuronx-cc refuses fails the whole compile. AWS's published operator list does
not name several operators the derived features use (``sin``, ``frac``, ``log1p``, ``sub``,
``clamp``, ``cat``), so by default only the network body goes to the NeuronCore:

* **Preamble** (host, CPU TorchScript inside the artifact): the derived features of
  ``modelspec.features`` and their standardisation with the training split's mean and standard
  deviation. ``(n, N_ENCODED)`` encoded inputs -> ``(n, N_DERIVED)`` normalised features.
* **Body** (the device): Linear and ReLU layers only, with the target's dollar scaling folded
  into the last layer. ``(n, N_DERIVED)`` -> ``(n,)`` dollars; with a scale head
  (``modelspec.intervals``), ``(n, 2)``: dollars, and the log of the row's scale in dollars, the
  head being a second row of the same last layer. On a NeuronCore it is ``t``, ``addmm``,
  ``relu`` (and ``view``), all on AWS's list (``compile/operators.py`` checks it); the host takes
  the scale's exponential.

The standardisation stays on the host rather than being folded into the first layer. Folding
the mean into the first layer's bias cancels catastrophically in float32: features such as
``lon_minus_lat`` (mean about -155, std about 2) make the weight and bias terms ~80 times the
result, and predictions moved by up to $1.08 on the validation sample -- above compile's $1
tolerance. Folding only the division would save one host operation but made the worst relative
error over the data set 4.7e-6 instead of 7.7e-7; on the host the two operations cost about a
microsecond. The dollar scaling folds exactly enough (worst $0.06 on the validation sample).

``Preamble`` followed by ``Body`` computes what ``HousingNet`` computes; both are built from a
trained ``HousingNet`` by ``split``, so the checkpoint format does not change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modelspec.network import DeriveFeatures, HousingNet


class Preamble(nn.Module):
    """Encoded inputs -> normalised network features: the host's share of the model."""

    feature_mean: Tensor
    feature_std: Tensor

    def __init__(self, derive: DeriveFeatures, feature_mean: Tensor, feature_std: Tensor) -> None:
        super().__init__()
        self.derive = derive
        self.register_buffer("feature_mean", feature_mean.detach().clone())
        self.register_buffer("feature_std", feature_std.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return (self.derive(x) - self.feature_mean) / self.feature_std


class Body(nn.Module):
    """Normalised features -> dollars (and log-scales), with Linear and ReLU only: the device's
    share.

    ``layers`` is ``Linear, ReLU, ..., Linear`` for the hidden widths, the last with ``outputs``
    rows: 1 (dollars, ``(n,)``) or 2 (dollars and log-scale, ``(n, 2)``). ``from_state`` rebuilds
    it from a state dict alone (the XLA backend moves this eager module to its device).
    """

    def __init__(self, n_features: int, hidden: tuple[int, ...], outputs: int = 1) -> None:
        super().__init__()
        if outputs not in (1, 2):
            raise ValueError(f"a body has 1 or 2 outputs, not {outputs}")
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, outputs))
        self.layers = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, x: Tensor) -> Tensor:
        if self.outputs == 2:
            return self.layers(x)
        # view, not squeeze: aten::view is on AWS's operator list, squeeze is not.
        return self.layers(x).view(-1)

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Body:
        """The body whose ``state_dict()`` is ``state`` (widths read from the weights)."""
        weights = [state[k] for k in sorted(state, key=_layer_order) if k.endswith(".weight")]
        if not weights or weights[-1].shape[0] not in (1, 2):
            raise ValueError(f"not a Body state dict: {sorted(state)}")
        hidden = tuple(int(w.shape[0]) for w in weights[:-1])
        body = cls(weights[0].shape[1], hidden, int(weights[-1].shape[0]))
        body.load_state_dict(state)
        return body.eval()


def _layer_order(key: str) -> int:
    return int(key.split(".")[1])  # "layers.<index>.weight"


@torch.no_grad()
def split(model: HousingNet) -> tuple[Preamble, Body]:
    """The preamble and body that together compute ``model`` (in eval mode, no gradients)."""
    preamble = Preamble(model.derive, model.feature_mean, model.feature_std)
    linears = [m for m in model.mlp if isinstance(m, nn.Linear)]
    head = model.scale_head
    hidden = tuple(m.out_features for m in linears[:-1])
    body = Body(model.config.n_features, hidden, 1 if head is None else 2)
    targets = [m for m in body.layers if isinstance(m, nn.Linear)]
    for source, target in zip(linears[:-1], targets[:-1], strict=True):
        target.weight.copy_(source.weight)
        target.bias.copy_(source.bias)
    # y = (w.h + b) * s + m = (w s).h + (b s + m), computed in float64 then rounded once.
    scale, shift = model.target_std.double(), model.target_mean.double()
    weight = [linears[-1].weight.double() * scale]
    bias = [linears[-1].bias.double() * scale + shift]
    if head is not None:  # log b = w.h + b + log s (``HousingNet.log_scale``)
        weight.append(head.weight.double())
        bias.append(head.bias.double() + scale.log())
    last = targets[-1]
    last.weight.copy_(torch.cat(weight))
    last.bias.copy_(torch.cat(bias))
    for module in (preamble, body):
        module.eval().requires_grad_(False)
    return preamble, body
