"""Reading the service's answers: the per-field errors of a refused body."""

from __future__ import annotations

from typing import Any

import httpx


def refusals(answer: httpx.Response) -> list[dict[str, Any]]:
    """The ``detail`` list of a 422 answer (each error's ``field``, ``type``, ``message``),
    asserting the status first."""
    assert answer.status_code == 422, answer.text
    detail: list[dict[str, Any]] = answer.json()["detail"]
    return detail
