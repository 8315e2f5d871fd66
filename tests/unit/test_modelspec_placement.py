"""The host/device split and the operator check, on the real trained network."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from compile.operators import DOCUMENTED, graph_operators, refused_operator, undocumented
from modelspec.features import N_DERIVED, N_ENCODED, encode_records
from modelspec.manifest import CHECKPOINT_FILE, Manifest
from modelspec.network import HousingNet
from modelspec.placement import Body, split
from tests.support.operators import FEATURE_OPERATORS


@pytest.fixture(scope="module")
def trained(artifacts: Path) -> HousingNet:
    return HousingNet.from_checkpoint(torch.load(artifacts / CHECKPOINT_FILE, weights_only=True))


@pytest.fixture(scope="module")
def rows(artifacts: Path, housing_frame: pd.DataFrame) -> torch.Tensor:
    median = Manifest.load(artifacts).preprocessing.total_bedrooms_median
    return torch.from_numpy(encode_records(housing_frame.to_dict(orient="records"), median))


def test_preamble_then_body_is_the_network_on_the_whole_data_set(
    trained: HousingNet, rows: torch.Tensor
) -> None:
    preamble, body = split(trained)
    with torch.no_grad():
        expected = trained(rows).double()
        out = body(preamble(rows)).double()
        log_scale = trained.log_scale(rows).double()
    got = out[:, 0]
    # Only the dollar scaling is folded (into the last layer): a few float32 roundings (the
    # two-row last layer sums in another order than the eager one-row layer).
    assert float(((got - expected).abs() / expected.abs()).max()) < 1e-5
    assert float((got - expected).abs().max()) < 0.5
    # The scale head is the last layer's second row, its log(target_std) folded into the bias.
    assert float((out[:, 1] - log_scale).abs().max()) < 1e-5


def test_the_body_is_linear_and_relu_only(trained: HousingNet) -> None:
    _, body = split(trained)
    kinds = [type(m).__name__ for m in body.layers]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert not any(p.requires_grad for p in body.parameters())
    operators = graph_operators(body, torch.zeros(3, N_DERIVED))
    assert operators == ["aten::addmm", "aten::relu", "aten::t"]
    assert undocumented(operators) == []


def test_a_model_without_a_scale_head_keeps_a_body_of_one_output(trained: HousingNet) -> None:
    config = trained.checkpoint()["config"] | {"scale_head": False}
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("scale_head")}
    old = HousingNet.from_checkpoint({"state_dict": state, "config": config})
    preamble, body = split(old)
    x = torch.zeros(3, N_ENCODED)
    with torch.no_grad():
        assert body(preamble(x)).shape == (3,)
        torch.testing.assert_close(body(preamble(x))[0], trained(x)[0])
    operators = graph_operators(body, torch.zeros(3, N_DERIVED))
    assert operators == ["aten::addmm", "aten::relu", "aten::t", "aten::view"]


def test_the_preamble_holds_every_undocumented_operator(trained: HousingNet) -> None:
    preamble, _ = split(trained)
    outside = undocumented(graph_operators(preamble, torch.zeros(3, N_ENCODED)))
    assert outside == FEATURE_OPERATORS


def test_the_checker_sees_an_operator_hidden_in_a_composite() -> None:
    # linear decomposes to t + addmm (both listed); squeeze is not on the list, view is.
    assert graph_operators(torch.nn.Linear(3, 1), torch.zeros(2, 3)) == ["aten::addmm", "aten::t"]
    squeezed = graph_operators(lambda x: torch.sin(x).squeeze(-1), torch.zeros(2, 1))
    assert undocumented(squeezed) == ["aten::sin", "aten::squeeze"]
    assert "aten::view" in DOCUMENTED and "aten::sin" not in DOCUMENTED


def test_a_body_rebuilds_from_its_state_alone(trained: HousingNet) -> None:
    _, body = split(trained)
    rebuilt = Body.from_state(dict(body.state_dict()))
    x = torch.randn(4, N_DERIVED)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), body(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a Body state dict"):
        Body.from_state({"layers.0.weight": torch.zeros(3, 2)})


@pytest.mark.parametrize(
    ("text", "operator"),
    [
        (
            "ERROR 85724 [neuronx-cc]: [NCC_EVRF001] Operator sine is not supported. Locate...",
            "sine (aten::sin)",
        ),
        ("[NCC_EVRF001] Operator topk is not supported.", "topk"),
        (
            "error: 'mhlo.custom_call' op Error: Unsupported CustomCall target: ResizeBilinear",
            "ResizeBilinear",
        ),
        ('Trace failing with unsupported HLO opcode "set-dimension-size"', "set-dimension-size"),
        ("RuntimeError: could not lower aten::fft_fft", "aten::fft_fft"),
        ("RuntimeError: neuronx-cc failed with 70", None),
    ],
)
def test_the_refused_operator_is_read_from_compiler_messages(
    text: str, operator: str | None
) -> None:
    assert refused_operator(text) == operator
