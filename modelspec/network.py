"""The network: derived features, normalisation and the MLP, in one module.

The blog's MLP (Linear -> 256 -> 128 -> 64 -> 1, ReLU, Dropout 0.2 before the last layer) sits
between two fixed stages that are buffers, not parameters: feature normalisation in front and
the target's scale behind, so the traced graph takes encoded raw features and returns dollars.
A checkpoint is ``{"state_dict": ..., "config": NetConfig.to_dict()}``; ``from_checkpoint``
rebuilds exactly the network that wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from modelspec.features import DERIVED_FEATURES, ENCODED_COLUMNS, N_DERIVED, N_ENCODED


@dataclass(frozen=True)
class NetConfig:
    n_inputs: int = N_ENCODED
    n_features: int = N_DERIVED
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetConfig:
        return cls(**{**data, "hidden": tuple(data["hidden"])})


class DeriveFeatures(nn.Module):
    """Applies ``DERIVED_FEATURES`` to an ``(n, N_ENCODED)`` batch; traces to plain tensor ops."""

    def __init__(self) -> None:
        super().__init__()
        col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
        self._plan = [
            (f.op, tuple(col[name] for name in f.inputs), f.weights) for f in DERIVED_FEATURES
        ]

    def forward(self, x: Tensor) -> Tensor:
        cols = []
        for op, idx, weights in self._plan:
            a = x[:, idx[0]]
            if op == "identity":
                cols.append(a)
            elif op == "log1p":
                cols.append(torch.log1p(a))
            elif op == "ratio":
                cols.append(a / x[:, idx[1]].clamp(min=1.0))
            elif op == "log1p_ratio":
                cols.append(torch.log1p(a / x[:, idx[1]].clamp(min=1.0)))
            elif op == "lincomb":
                acc = weights[0] * a
                for w, i in zip(weights[1:], idx[1:], strict=True):
                    acc = acc + w * x[:, i]
                cols.append(acc)
            else:  # pragma: no cover - FeatureOp is a closed Literal
                raise ValueError(f"unknown feature op {op!r}")
        return torch.stack(cols, dim=1)


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
