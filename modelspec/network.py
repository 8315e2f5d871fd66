"""The network: derived features, normalisation and the MLP, in one module.

The blog's MLP (Linear -> 256 -> 128 -> 64 -> 1, ReLU, Dropout 0.2 before the last layer) sits
between two fixed stages that are buffers, not parameters: feature normalisation in front and
the target's scale behind, so the traced graph takes encoded raw features and returns dollars.
A checkpoint is ``{"state_dict": ..., "config": NetConfig.to_dict()}``; ``from_checkpoint``
rebuilds exactly the network that wrote it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from modelspec.features import (
    DERIVED_FEATURES,
    ENCODED_COLUMNS,
    N_DERIVED,
    N_ENCODED,
)


@dataclass(frozen=True)
class NetConfig:
    n_inputs: int = N_ENCODED
    n_features: int = N_DERIVED
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2
    # A second output of the last hidden layer: the log of each row's typical error in dollars
    # (``modelspec.intervals``). False in checkpoints written before intervals existed.
    scale_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetConfig:
        return cls(**{**data, "hidden": tuple(data["hidden"])})


# How each feature op is computed; the others (log1p, log1p_ratio, ratio) by their own name.
_KIND = {"identity": "affine", "lincomb": "affine", "sin": "periodic", "cos": "periodic"}


class DeriveFeatures(nn.Module):
    """Applies ``DERIVED_FEATURES`` to an ``(n, N_ENCODED)`` batch in seventeen graph ops.

    A small batch's cost is the number of ops, not their arithmetic (about 2.5 us each on the
    CPU at batch 1), so features are computed in as few as keep them exact:

    * every feature that is affine in the inputs -- identities, linear combinations and the
      phases of the periodic features -- comes out of one ``mm`` of the inputs measured from
      ``origin``, plus a constant. Each output sums at most two non-zero products, and the
      periodic weights are powers of two, so the result does not depend on the order the
      matmul adds in, nor on the batch size;
    * the periodic features then keep the phase's fraction of a cycle (``frac``) and take one
      ``sin``: a cosine is a sine a quarter cycle later;
    * logs and ratios share one gather of numerators and one of denominators, clamped to
      ``[den_low, den_high]``: ``[1, inf)`` for a ratio, ``[1, 1]`` (exactly 1) for a log;
    * ``cat`` and one ``index_select`` put the features back in spec order.
    """

    origin: Tensor
    affine_weight: Tensor
    affine_bias: Tensor
    numerators: Tensor
    denominators: Tensor
    den_low: Tensor
    den_high: Tensor
    two_pi: Tensor
    order: Tensor

    def __init__(self) -> None:
        super().__init__()
        col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
        kinds: dict[str, list[int]] = {
            op: [] for op in ("affine", "periodic", "log1p", "log1p_ratio", "ratio")
        }
        for k, f in enumerate(DERIVED_FEATURES):
            kinds[_KIND.get(f.op, f.op)].append(k)
        origin = _column_origins(col)
        phased = kinds["affine"] + kinds["periodic"]
        weight = torch.zeros(N_ENCODED, len(phased), dtype=torch.float64)
        bias = torch.zeros(len(phased), dtype=torch.float64)
        for j, k in enumerate(phased):
            f = DERIVED_FEATURES[k]
            for name, w in zip(f.inputs, f.weights or (1.0,), strict=True):
                weight[col[name], j] = w
                if f.op not in ("sin", "cos"):
                    bias[j] += w * origin[col[name]]  # affine: measured from 0, not origin
            bias[j] += 0.25 if f.op == "cos" else 0.0  # cos(2 pi t) = sin(2 pi (t + 1/4))
        quotients = kinds["log1p"] + kinds["log1p_ratio"] + kinds["ratio"]
        nums, dens, highs = [], [], []
        for k in quotients:
            f = DERIVED_FEATURES[k]
            nums.append(col[f.inputs[0]])
            dens.append(col[f.inputs[-1]])  # a log's own column, clamped to exactly 1
            highs.append(1.0 if f.op == "log1p" else math.inf)
        computed = phased + quotients  # feature index of each computed column
        self.n_affine = len(kinds["affine"])
        self.n_periodic = len(kinds["periodic"])
        self.n_logs = len(kinds["log1p"]) + len(kinds["log1p_ratio"])
        self.n_ratios = len(kinds["ratio"])

        def buffer(name: str, value: Tensor) -> None:
            # Not persistent: derived from the spec, so not part of the trained state.
            self.register_buffer(name, value, persistent=False)

        buffer("origin", torch.tensor(origin))
        buffer("affine_weight", weight.float())
        buffer("affine_bias", bias.float())
        buffer("numerators", torch.tensor(nums, dtype=torch.long))
        buffer("denominators", torch.tensor(dens, dtype=torch.long))
        buffer("den_low", torch.ones(len(quotients)))
        buffer("den_high", torch.tensor(highs))
        buffer("two_pi", torch.tensor(2 * math.pi))  # float32, like the features
        buffer("order", torch.tensor([computed.index(k) for k in range(N_DERIVED)]))

    def forward(self, x: Tensor) -> Tensor:
        phased = torch.mm(x - self.origin, self.affine_weight) + self.affine_bias
        cycles = phased.narrow(1, self.n_affine, self.n_periodic)
        denominators = x.index_select(1, self.denominators).clamp(self.den_low, self.den_high)
        quotients = x.index_select(1, self.numerators) / denominators
        parts = [
            phased.narrow(1, 0, self.n_affine),
            torch.sin(torch.frac(cycles) * self.two_pi),
            torch.log1p(quotients.narrow(1, 0, self.n_logs)),
            quotients.narrow(1, self.n_logs, self.n_ratios),
        ]
        return torch.cat(parts, dim=1).index_select(1, self.order)


def _column_origins(col: Mapping[str, int]) -> list[float]:
    """Each encoded column's origin: where the periodic features measure it from (0 if none).
    One per column, so a single subtraction serves every feature."""
    origin = [0.0] * len(col)
    seen: dict[int, float] = {}
    for f in DERIVED_FEATURES:
        for name, o in zip(f.inputs, f.origin, strict=False):
            if seen.setdefault(col[name], o) != o:
                raise ValueError(f"periodic features measure {name} from different origins")
            origin[col[name]] = o
    return origin


class HousingNet(nn.Module):
    # Buffers: fitted on the training split, saved in the state dict, traced as constants.
    feature_mean: Tensor
    feature_std: Tensor
    target_mean: Tensor
    target_std: Tensor

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        if (config.n_inputs, config.n_features) != (N_ENCODED, N_DERIVED):
            raise ValueError(
                f"config expects {config.n_inputs} inputs / {config.n_features} features but the "
                f"feature spec has {N_ENCODED} / {N_DERIVED}. Hint: retrain with this code."
            )
        self.config = config
        self.derive = DeriveFeatures()
        self.register_buffer("feature_mean", torch.zeros(config.n_features))
        self.register_buffer("feature_std", torch.ones(config.n_features))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        layers: list[nn.Module] = []
        width = config.n_features
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Dropout(config.dropout), nn.Linear(width, 1)]
        self.mlp = nn.Sequential(*layers)
        # Fitted after the point's weights, which it leaves unchanged (``training.calibration``).
        # Built without drawing on the global generator, so a seed trains the very point model
        # it trained before the head existed (dropout draws on it).
        self.scale_head: nn.Linear | None = None
        if config.scale_head:
            with torch.random.fork_rng(devices=[]):
                self.scale_head = nn.Linear(width, 1)

    def set_normalization(
        self, feature_mean: Tensor, feature_std: Tensor, target_mean: float, target_std: float
    ) -> None:
        """Fix the normalisation fitted on the training split (std floored to avoid 0)."""
        self.feature_mean.copy_(feature_mean)
        self.feature_std.copy_(feature_std.clamp(min=1e-6))
        self.target_mean.fill_(target_mean)
        self.target_std.fill_(target_std)

    def features(self, x: Tensor) -> Tensor:
        """Normalised network features of an encoded batch."""
        return (self.derive(x) - self.feature_mean) / self.feature_std

    def forward(self, x: Tensor) -> Tensor:
        """Encoded ``(n, N_ENCODED)`` float32 batch -> ``(n,)`` house values in dollars."""
        return self.mlp(self.features(x)).squeeze(-1) * self.target_std + self.target_mean

    def hidden(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations: what both outputs are linear in."""
        return self.mlp[:-1](self.features(x))

    def log_scale(self, x: Tensor) -> Tensor:
        """``(n,)`` log of each row's typical error in dollars (the scale head's output)."""
        if self.scale_head is None:
            raise ValueError(
                "this checkpoint has no scale head (trained before prediction intervals). "
                "Hint: retrain with `python -m training`."
            )
        return self.scale_head(self.hidden(x)).squeeze(-1) + self.target_std.log()

    def scaled(self, x: Tensor) -> Tensor:
        """The standardised prediction that training's loss is computed on."""
        return self.mlp(self.features(x)).squeeze(-1)

    def checkpoint(self) -> dict[str, Any]:
        return {"state_dict": self.state_dict(), "config": self.config.to_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> HousingNet:
        model = cls(NetConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()
