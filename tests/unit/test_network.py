import pytest
import torch

from modelspec import torchscript
from modelspec.features import DERIVED_FEATURES, ENCODED_COLUMNS, N_DERIVED, N_ENCODED
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


def test_derived_features_match_a_feature_by_feature_reference() -> None:
    x = torch.rand(6, N_ENCODED) * 100
    col = {c: i for i, c in enumerate(ENCODED_COLUMNS)}
    expected = []
    for f in DERIVED_FEATURES:
        a = x[:, col[f.inputs[0]]]
        if f.op == "identity":
            expected.append(a)
        elif f.op == "log1p":
            expected.append(torch.log1p(a))
        elif f.op == "ratio":
            expected.append(a / x[:, col[f.inputs[1]]].clamp(min=1))
        elif f.op == "log1p_ratio":
            expected.append(torch.log1p(a / x[:, col[f.inputs[1]]].clamp(min=1)))
        else:
            expected.append(sum(w * x[:, col[n]] for w, n in zip(f.weights, f.inputs, strict=True)))
    torch.testing.assert_close(_model().derive(x), torch.stack(expected, 1))
