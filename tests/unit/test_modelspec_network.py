import math

import pandas as pd
import pytest
import torch

from modelspec import torchscript
from modelspec.features import (
    DERIVED_FEATURES,
    ENCODED_COLUMNS,
    N_DERIVED,
    N_ENCODED,
    DerivedFeature,
    encode_records,
)
from modelspec.network import HousingNet, NetConfig


def _model() -> HousingNet:
    torch.manual_seed(0)
    model = HousingNet(NetConfig())
    model.set_normalization(
        torch.full((N_DERIVED,), 2.0), torch.full((N_DERIVED,), 3.0), 200_000.0, 100_000.0
    )
    return model.eval()


def test_the_blog_architecture() -> None:
    layers = [type(m).__name__ for m in _model().mlp]
    assert layers == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]
    widths = [m.out_features for m in _model().mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 128, 64, 1]


def test_checkpoint_rebuilds_the_same_network() -> None:
    model = _model()
    rebuilt = HousingNet.from_checkpoint(model.checkpoint())
    x = torch.rand(5, N_ENCODED) * 100
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert rebuilt.config == model.config


def test_a_config_for_another_feature_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="Hint: retrain"):
        HousingNet(NetConfig(n_features=N_DERIVED + 1))


def test_zero_counts_stay_finite() -> None:
    # Padding rows are all zeros, and a request may have total_rooms == 0.
    assert torch.isfinite(_model()(torch.zeros(3, N_ENCODED))).all()


def test_trace_runs_at_other_batch_sizes() -> None:
    model = _model()
    traced = torchscript.trace(model, torch.rand(1, N_ENCODED))
    x = torch.rand(7, N_ENCODED) * 10
    torch.testing.assert_close(traced(x), model(x))


def _californian(n: int) -> torch.Tensor:
    """Random encoded rows: counts up to 100, coordinates inside California."""
    x = torch.rand(n, N_ENCODED) * 100
    x[:, 0] = -124.5 + 10.5 * torch.rand(n)
    x[:, 1] = 32.5 + 9.5 * torch.rand(n)
    return x


def _periodic_reference(x: torch.Tensor, f: DerivedFeature) -> torch.Tensor:
    """sin or cos of 2 pi sum(w * (x - origin)), in float64 from the float32 inputs."""
    col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
    cycles = sum(
        w * (x[:, col[name]].double() - o)
        for name, w, o in zip(f.inputs, f.weights, f.origin, strict=True)
    )
    assert isinstance(cycles, torch.Tensor)
    return getattr(torch, f.op)(2 * math.pi * cycles).float()


def test_derived_features_match_a_feature_by_feature_reference() -> None:
    x = _californian(6)
    col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
    expected = []
    for f in DERIVED_FEATURES:
        a = x[:, col[f.inputs[0]]]
        if f.op in ("sin", "cos"):
            expected.append(_periodic_reference(x, f))
        elif f.op == "identity":
            expected.append(a)
        elif f.op == "log1p":
            expected.append(torch.log1p(a))
        elif f.op == "ratio":
            expected.append(a / x[:, col[f.inputs[1]]].clamp(min=1))
        elif f.op == "log1p_ratio":
            expected.append(torch.log1p(a / x[:, col[f.inputs[1]]].clamp(min=1)))
        else:
            expected.append(sum(w * x[:, col[n]] for w, n in zip(f.weights, f.inputs, strict=True)))
    # The periodic features' phase is rounded once in float32 (to ~2e-6 of a cycle).
    torch.testing.assert_close(_model().derive(x), torch.stack(expected, 1), rtol=1e-5, atol=5e-5)


def test_periodic_features_match_the_reference_on_the_whole_data_set(
    housing_frame: pd.DataFrame,
) -> None:
    x = torch.from_numpy(encode_records(housing_frame.to_dict(orient="records"), 435.0))
    derived = _model().derive(x)
    for k, f in enumerate(DERIVED_FEATURES):
        if f.op in ("sin", "cos"):
            torch.testing.assert_close(derived[:, k], _periodic_reference(x, f), rtol=0, atol=5e-5)


def test_traced_equals_eager_exactly_at_every_batch_size(housing_frame: pd.DataFrame) -> None:
    # The traced graph (what compile ships) computes the same numbers as the eager network,
    # and a row's features do not depend on the batch it is in (the MLP's matmuls may round
    # differently at batch 1, the features must not).
    model = _model()
    x = torch.from_numpy(encode_records(housing_frame.head(500).to_dict(orient="records"), 435.0))
    traced = torchscript.trace(model, x[:1])
    with torch.no_grad():
        features = model.derive(x)
        for size in (1, 2, 7, 64, 500):
            assert torch.equal(traced(x[:size]), model(x[:size])), size
            assert torch.equal(model.derive(x[:size]), features[:size]), size


def test_periodic_features_stay_bounded_for_any_accepted_location() -> None:
    # The service accepts any longitude/latitude; far from California the phase is large,
    # but only its fraction of a cycle reaches sin.
    x = torch.zeros(4, N_ENCODED)
    x[:, 0] = torch.tensor([-180.0, 180.0, 0.0, -122.0])
    x[:, 1] = torch.tensor([-90.0, 90.0, 0.0, 37.5])
    derived = _model().derive(x)
    periodic = [k for k, f in enumerate(DERIVED_FEATURES) if f.op in ("sin", "cos")]
    assert derived[:, periodic].abs().max() <= 1.0
    assert torch.isfinite(_model()(x)).all()
