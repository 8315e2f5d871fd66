"""Every failure maps to a clean answer: status, body and headers."""

from __future__ import annotations

import logging

import pytest

from app.core.batching import DeadlineExceeded, Overloaded, ShuttingDown
from app.errors import NotReadyError
from app.http.refusals import error_answer


@pytest.mark.parametrize(
    ("exc", "status", "detail", "headers"),
    [
        (
            NotReadyError("the model is not ready"),
            503,
            "the model is not ready",
            {"Retry-After": "1"},
        ),
        (
            ShuttingDown("the server is shutting down"),
            503,
            "the server is shutting down",
            {"Retry-After": "1"},
        ),
        (
            Overloaded("9 rows are queued"),
            503,
            "overloaded, retry later: 9 rows are queued",
            {"Retry-After": "1"},
        ),
        (
            DeadlineExceeded("no result within 1s"),
            504,
            "deadline exceeded: no result within 1s",
            {},
        ),
    ],
)
def test_known_failures(exc: Exception, status: int, detail: str, headers: dict[str, str]) -> None:
    assert error_answer(exc, "POST /predict", "r1") == (status, {"detail": detail}, headers)


def test_an_unexpected_error_is_a_500_with_an_id_that_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="housing.errors"):
        status, body, headers = error_answer(RuntimeError("secret detail"), "POST /predict", "r7")
    assert status == 500
    assert set(body) == {"detail", "error_id"}
    assert body["error_id"] == "r7"  # the request id: one value in the answer, header and log
    assert body["detail"] == "internal error"
    assert "secret detail" not in str(body)
    assert f"error {body['error_id']} on POST /predict" in caplog.text
