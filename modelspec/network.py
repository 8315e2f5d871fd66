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
    DerivedFeature,
)


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
    """Applies ``DERIVED_FEATURES`` to an ``(n, N_ENCODED)`` batch.

    Features are computed a group per op (one matmul for identities and linear combinations,
    one gather per elementwise op, one gather for all inputs of the periodic ones, whose
    cosines are sines a quarter cycle later), then put back in spec order with one
    index_select: about twenty-five graph ops instead of three or four per feature (measured:
    a batch-1 call of the CPU artifact went from 68 to 58 us; the 96 periodic features took it
    from about 40 to 60 us).
    """

    lin_weight: Tensor
    log_cols: Tensor
    ratio_num: Tensor
    ratio_den: Tensor
    log_ratio_num: Tensor
    log_ratio_den: Tensor
    periodic_cols: Tensor
    periodic_weight: Tensor
    periodic_origin: Tensor
    periodic_shift: Tensor
    two_pi: Tensor
    order: Tensor

    def __init__(self) -> None:
        super().__init__()
        col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
        groups: dict[str, list[int]] = {
            op: [] for op in ("lin", "log", "ratio", "log_ratio", "periodic")
        }
        weight = torch.zeros(N_ENCODED, N_DERIVED)
        logs, nums, dens, log_nums, log_dens = [], [], [], [], []
        periodic: list[DerivedFeature] = []
        for k, f in enumerate(DERIVED_FEATURES):
            idx = [col[name] for name in f.inputs]
            if f.op in ("sin", "cos"):
                periodic.append(f)
                groups["periodic"].append(k)
            elif f.op in ("identity", "lincomb"):
                weights = f.weights or (1.0,)
                for i, w in zip(idx, weights, strict=True):
                    weight[i, len(groups["lin"])] = w
                groups["lin"].append(k)
            elif f.op == "log1p":
                logs.append(idx[0])
                groups["log"].append(k)
            elif f.op == "ratio":
                nums.append(idx[0])
                dens.append(idx[1])
                groups["ratio"].append(k)
            else:  # log1p_ratio
                log_nums.append(idx[0])
                log_dens.append(idx[1])
                groups["log_ratio"].append(k)
        computed = [k for g in groups.values() for k in g]  # feature index of each output
        order = torch.tensor([computed.index(k) for k in range(N_DERIVED)])

        def buffer(name: str, value: Tensor) -> None:
            # Not persistent: derived from the spec, so not part of the trained state.
            self.register_buffer(name, value, persistent=False)

        buffer("lin_weight", weight[:, : len(groups["lin"])].contiguous())
        buffer("log_cols", torch.tensor(logs, dtype=torch.long))
        buffer("ratio_num", torch.tensor(nums, dtype=torch.long))
        buffer("ratio_den", torch.tensor(dens, dtype=torch.long))
        buffer("log_ratio_num", torch.tensor(log_nums, dtype=torch.long))
        buffer("log_ratio_den", torch.tensor(log_dens, dtype=torch.long))
        # Input slots of the periodic features (a plain int: the traced loop unrolls over it).
        self.periodic_slots = max((len(f.inputs) for f in periodic), default=1)
        self.periodic_count = len(periodic)
        cols, slot_weight, origin = _periodic_tables(periodic, col, self.periodic_slots)
        buffer("periodic_cols", cols)
        buffer("periodic_weight", slot_weight)
        buffer("periodic_origin", origin)
        # cos(2 pi t) = sin(2 pi (t + 1/4)): one sin for all of them.
        buffer("periodic_shift", torch.tensor([0.25 * (f.op == "cos") for f in periodic]))
        buffer("two_pi", torch.tensor(2 * math.pi))  # float32, like the features
        buffer("order", order)

    def forward(self, x: Tensor) -> Tensor:
        def ratio(num: Tensor, den: Tensor) -> Tensor:
            return x.index_select(1, num) / x.index_select(1, den).clamp(min=1.0)

        def periodic() -> Tensor:
            # Every input slot of every feature in one gather, measured from its origin and
            # weighted elementwise, then summed over the slots (a few terms, no long reduction
            # whose order could differ between batch sizes or backends). Then the phase's
            # fraction of a cycle, in radians.
            terms = (x.index_select(1, self.periodic_cols) - self.periodic_origin) * (
                self.periodic_weight
            )
            k = self.periodic_count
            cycles = terms.narrow(1, 0, k) + self.periodic_shift
            for j in range(1, self.periodic_slots):
                cycles = cycles + terms.narrow(1, j * k, k)
            return torch.sin((cycles - torch.floor(cycles)) * self.two_pi)

        parts = [
            x @ self.lin_weight,
            torch.log1p(x.index_select(1, self.log_cols)),
            ratio(self.ratio_num, self.ratio_den),
            torch.log1p(ratio(self.log_ratio_num, self.log_ratio_den)),
            periodic(),
        ]
        return torch.cat(parts, dim=1).index_select(1, self.order)


def _periodic_tables(
    feats: list[DerivedFeature], col: Mapping[str, int], slots: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Column index, weight and origin of each input slot of each periodic feature, flattened
    slot by slot (all features' first inputs, then all second inputs, ...); a feature with
    fewer inputs than ``slots`` gets slots of weight 0."""
    cols = torch.zeros(slots, len(feats), dtype=torch.long)
    weight = torch.zeros(slots, len(feats))
    origin = torch.zeros(slots, len(feats))
    for k, f in enumerate(feats):
        for j, name in enumerate(f.inputs):
            cols[j, k] = col[name]
            weight[j, k] = f.weights[j]
            origin[j, k] = f.origin[j] if f.origin else 0.0
    return cols.flatten(), weight.flatten(), origin.flatten()


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
