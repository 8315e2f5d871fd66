"""``make rollout``'s check: an answer must equal the model its X-Model-Version names."""

from __future__ import annotations

import numpy as np

from reliability.rollout import Answered, Sent, check
from reliability.workload import read_many


def test_an_answer_from_the_other_model_or_a_failed_one_is_caught() -> None:
    expected = {"a": np.array([100.0, 200.0, 300.0]), "b": np.array([110.0, 220.0, 330.0])}
    sent = Sent("/predict", b"", "application/json", np.array([2, 0]), read_many)

    def answered(version: str | None, values: list[float] | None, status: int = 200) -> Answered:
        got = None if values is None else np.array(values)
        return Answered(sent, status, version, got, 0.0, 0.01)

    assert check([answered("a", [300.0, 100.0]), answered("b", [330.0, 110.0])], expected) == []
    wrong = check(
        [
            answered("a", [330.0, 110.0]),  # b's values under a's name
            answered("c", [300.0, 100.0]),  # a model nobody installed
            answered(None, None, 503),
        ],
        expected,
    )
    assert [w.split(":")[0] for w in wrong] == ["#0 /predict", "#1 /predict", "#2 /predict"]
    assert "from model a" in wrong[0]
