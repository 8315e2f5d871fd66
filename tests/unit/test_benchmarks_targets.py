"""make bench's targets: ratios to the reference of the same run, each met or missed."""

from __future__ import annotations

import pytest

from benchmarks.load import Result
from benchmarks.targets import FLOOR, REFERENCE, SERVICE, STANDIN, check_targets


def _result(
    server: str, body: str, c: int, rps: float, p50: float, p99: float, cpu: float
) -> Result:
    rows = 100 if body.startswith("100 records") else 1
    return Result(server, body, c, rps, p50, p99, 0, rows, cpu, 4.0 if rows == 100 else 1.0)


def test_the_targets_are_ratios_to_the_reference_of_the_same_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pinned = [
        _result(REFERENCE, "1 record", 64, 10_000, 5, 10, 100),
        _result(REFERENCE, "1 record", 1, 4_000, 0.2, 0.4, 200),
        _result(REFERENCE, "100 records", 64, 5_000, 10, 20, 150),
        _result(SERVICE, "1 record", 64, 5_000, 10, 14, 190),  # 0.50x, p99 1.4x: both met
        _result(SERVICE, "1 record", 1, 1_000, 0.7, 1, 500),  # p50 3.5x: missed
        _result(SERVICE, "100 records", 64, 1_000, 60, 90, 900),  # rows 0.20x: missed
        _result(STANDIN, "1 record", 64, 6_000, 9, 12, 150),  # CPU 1.5x: met
        _result(FLOOR, "1 record", 64, 7_000, 8, 11, 120),
        _result(SERVICE, "1 record, no range", 64, 5_400, 9, 13, 180),  # 0.93x: met
        _result(SERVICE, "100 records, no range", 64, 1_250, 50, 80, 800),  # 0.80x: missed
    ]
    assert check_targets(pinned, []) == 0
    out = capsys.readouterr().out
    assert (
        "[ok] cpu c64 1 record req/s with ranges = 0.93x without (?coverage=0) (>= 0.9); "
        "CPU/request 190 us against 180"
    ) in out
    assert "[MISSED] cpu c64 100 records rows/s with ranges = 0.80x without" in out
    assert "[ok] cpu c64 1-record req/s = 0.50x" in out
    assert "[ok] cpu c64 1-record p99 = 1.40x" in out
    assert "[MISSED] cpu c1 p50 = 3.50x" in out
    assert "[MISSED] cpu CPU/request at c1 = 2.63x at c64" in out
    assert "the reference's own CPU/request at c1 = 2.00x at c64" in out
    assert "[MISSED] cpu c64 100-record rows/s = 0.20x" in out
    assert "took 4.0 us/row of the core in that run: at most 250,000 rows/s" in out
    assert "(1.00x the need)" in out
    assert "[ok] neuron stand-in c64 CPU/request = 150 us = 1.50x" in out
    # p99 / mean: 14 ms over 64 / 5,000 req/s, and 10 ms over 64 / 10,000 req/s.
    assert "the service's 1.09, the reference's 1.56" in out
    assert "p99 <= 1.5x needs req/s >= 0.47x the reference's" in out
    assert "free device c64 CPU/request = 120 us = 1.20x the reference's" in out
    assert "the stand-in's preamble and device thread add 30 us" in out
