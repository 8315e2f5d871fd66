"""Early load shedding: a request that cannot fit in the queue is refused before its body."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.core.batching import Overloaded
from app.core.inference import InferencePath
from app.http.endpoint import PredictionEndpoint
from app.http.guard import Guard
from app.settings import Settings


def endpoint(queued_rows: int, bytes_per_row: float) -> PredictionEndpoint[None]:
    batcher = SimpleNamespace(queued_rows=queued_rows, queue_rows=4096)
    runtime: Any = SimpleNamespace(batcher=batcher, settings=Settings(max_instances=1024))
    recorder: Any = None
    plane = InferencePath(runtime)
    made: PredictionEndpoint[None] = PredictionEndpoint(
        plane, Guard(max_body_bytes=1 << 20, api_key=None), recorder
    )
    made.bytes_per_row = bytes_per_row
    return made


def test_a_request_that_cannot_fit_is_refused_from_its_length() -> None:
    with pytest.raises(Overloaded, match="holds about 100"):
        endpoint(4000, 150.0).shed_early({b"content-length": b"15000"})


@pytest.mark.parametrize(
    ("queued", "per_row", "headers"),
    [
        (4000, 150.0, {b"content-length": b"14000"}),  # ~93 rows: they fit
        (0, 150.0, {b"content-length": b"1000000"}),  # nothing queued: never shed early
        (4000, 0.0, {b"content-length": b"15000"}),  # no estimate yet
        (4000, 150.0, {}),  # chunked: no length to judge by
        (4000, 150.0, {b"content-length": b"1e9"}),  # not a length: left to the body reader
        # 6 MB of CSV (~100,000 rows) enters the queue 1,024 rows at a time: it fits.
        (3000, 60.0, {b"content-length": b"6000000"}),
    ],
)
def test_otherwise_the_request_goes_on(
    queued: int, per_row: float, headers: dict[bytes, bytes]
) -> None:
    endpoint(queued, per_row).shed_early(headers)


def test_a_large_request_is_judged_by_the_rows_it_queues_at_a_time() -> None:
    with pytest.raises(Overloaded, match="holds about 1024"):
        endpoint(3100, 60.0).shed_early({b"content-length": b"6000000"})
