"""The scale head in training (``training.calibration``): fitted without moving the point,
learning where errors are large, tempered, and its table in the manifest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from modelspec.intervals import COVERAGES
from modelspec.network import HousingNet, NetConfig
from training.calibration import (
    EXPONENTS,
    calibrate_on,
    fit_scale_head,
    point_and_scale,
    temper_scale_head,
)
from training.train import Rows


def _model(rows: Rows) -> HousingNet:
    torch.manual_seed(3)
    model = HousingNet(NetConfig(hidden=(16, 8), scale_head=True))
    with torch.no_grad():
        feats = model.derive(rows.x)
        model.set_normalization(feats.mean(0), feats.std(0), float(rows.y.mean()), 50_000.0)
    return model.eval()


@pytest.fixture(scope="module")
def rows(housing_frame: pd.DataFrame) -> Rows:
    return Rows.of(housing_frame.iloc[:3000], 435.0)


def _noisy_targets(model: HousingNet, rows: Rows, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets whose error scale is a known linear function of the last hidden layer: the
    head can learn it exactly. Returns the targets and the true log-scales."""
    with torch.no_grad():
        hidden = model.hidden(rows.x)
        direction = torch.linspace(-1, 1, hidden.shape[1])
        true_log = 9.5 + (hidden @ direction - (hidden @ direction).mean()).clamp(-2, 2)
        torch.manual_seed(seed)
        noise = torch.distributions.Laplace(0.0, 1.0).sample((len(rows.x),))
        return model(rows.x) + noise * true_log.exp(), true_log


def test_fitting_the_head_learns_the_error_scale_and_leaves_the_point_alone(rows: Rows) -> None:
    model = _model(rows)
    y, true_log = _noisy_targets(model, rows, seed=1)
    before = model(rows.x).clone()
    fit_scale_head(model, rows.x, y)
    assert torch.equal(model(rows.x), before)  # exactly: the point's weights are frozen
    learned = model.log_scale(rows.x).detach().double().numpy()
    assert np.corrcoef(learned, true_log.double().numpy())[0, 1] > 0.9


def test_tempering_multiplies_the_head_by_the_chosen_exponent(rows: Rows) -> None:
    model = _model(rows)
    y, _ = _noisy_targets(model, rows, seed=2)
    fit_scale_head(model, rows.x, y)
    assert model.scale_head is not None
    weight, bias = model.scale_head.weight.clone(), model.scale_head.bias.clone()
    exponent = temper_scale_head(model, rows.x, y)
    assert exponent in EXPONENTS
    torch.testing.assert_close(model.scale_head.weight, weight * exponent)
    torch.testing.assert_close(model.scale_head.bias, bias * exponent)


def test_calibration_gives_a_quantile_for_every_coverage(rows: Rows) -> None:
    model = _model(rows)
    y, _ = _noisy_targets(model, rows, seed=4)
    fit_scale_head(model, rows.x[:2000], y[:2000])
    table = calibrate_on(model, rows.x[2000:], y[2000:])
    assert table.coverages == list(COVERAGES)
    assert table.calibration_rows == 1000
    assert table.scale_exponent in EXPONENTS
    point, scale = point_and_scale(model, rows.x[2000:])
    inside = np.abs(y[2000:].double().numpy() - point) <= table.quantile(0.9) * scale
    assert math.isclose(float(inside.mean()), 0.9, abs_tol=0.01)  # on its own rows: by rank


def test_a_checkpoint_without_a_scale_head_still_loads_and_says_how_to_get_one() -> None:
    model = HousingNet(NetConfig())
    config = model.checkpoint()["config"]
    del config["scale_head"]  # as written before intervals existed
    old = HousingNet.from_checkpoint({"state_dict": model.state_dict(), "config": config})
    assert old.scale_head is None
    with pytest.raises(ValueError, match="retrain with `python -m training`"):
        old.log_scale(torch.zeros(1, 13))


def test_the_head_does_not_change_what_a_seed_trains() -> None:
    # Building the head draws nothing from the global generator (dropout draws on it).
    torch.manual_seed(5)
    HousingNet(NetConfig(scale_head=False))
    without = torch.rand(3)
    torch.manual_seed(5)
    HousingNet(NetConfig(scale_head=True))
    assert torch.equal(torch.rand(3), without)
