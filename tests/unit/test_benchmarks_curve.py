"""The concurrency curve's arithmetic, table and plot, on made-up Results (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.curve import Ratio, cpu_model, plot, ratios, table, title
from benchmarks.load import Result
from benchmarks.run import medians
from benchmarks.targets import REFERENCE, SERVICE


def result(server: str, c: int, rps: float, p50: float, p99: float, cpu: float) -> Result:
    return Result(server, "1 record", c, rps, p50, p99, 0, 1, cpu)


CURVE = [
    result(REFERENCE, 1, 4_000, 0.25, 0.5, 200),
    result(SERVICE, 1, 1_000, 1.0, 2.0, 600),
    result(REFERENCE, 64, 10_000, 6.0, 12.0, 100),
    result(SERVICE, 64, 5_000, 12.0, 18.0, 180),
    result(REFERENCE, 256, 8_000, 30.0, 60.0, 110),  # the service's point is missing
]


def test_ratios_are_the_service_over_the_reference_at_each_concurrency() -> None:
    assert ratios(CURVE) == [
        Ratio(1, 0.25, 4.0, 4.0, 3.0),
        Ratio(64, 0.5, 2.0, 1.5, 1.8),
    ]


def test_medians_over_rounds_are_taken_per_server_and_concurrency() -> None:
    rounds = [
        result(SERVICE, 4, 1_000, 1.0, 3.0, 300),
        result(SERVICE, 4, 3_000, 2.0, 1.0, 500),
        result(SERVICE, 4, 2_000, 9.0, 2.0, 100),
        result(REFERENCE, 4, 5_000, 0.5, 1.0, 90),
    ]
    figures = [
        (r.server, r.concurrency, r.requests_per_s, r.p50_ms, r.p99_ms, r.cpu_us_per_request)
        for r in medians(rounds)
    ]
    assert figures == [(SERVICE, 4, 2_000, 2.0, 2.0, 300), (REFERENCE, 4, 5_000, 0.5, 1.0, 90)]


def test_the_table_lists_both_servers_and_their_ratio_per_concurrency() -> None:
    assert table(CURVE).splitlines() == [
        "| conc | server | req/s | p50 ms | p99 ms | CPU us/request | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        f"| 1 | {REFERENCE} | 4,000 | 0.25 | 0.50 | 200 | 0 |",
        f"| 1 | {SERVICE} | 1,000 | 1.00 | 2.00 | 600 | 0 |",
        "| 1 | **service / reference** | 0.25x | 4.00x | 4.00x | 3.00x | |",
        f"| 64 | {REFERENCE} | 10,000 | 6.00 | 12.00 | 100 | 0 |",
        f"| 64 | {SERVICE} | 5,000 | 12.00 | 18.00 | 180 | 0 |",
        "| 64 | **service / reference** | 0.50x | 2.00x | 1.50x | 1.80x | |",
        f"| 256 | {REFERENCE} | 8,000 | 30.00 | 60.00 | 110 | 0 |",
    ]


@pytest.mark.parametrize(
    ("cpuinfo", "model"),
    [
        (
            "processor\t: 0\nmodel name\t: AMD EPYC 7R13\nprocessor\t: 1\nmodel name\t: x\n",
            "AMD EPYC 7R13",
        ),
        ("processor\t: 0\nCPU part\t: 0xd0c\n", "unknown CPU"),
        ("", "unknown CPU"),
    ],
)
def test_the_cpu_model_is_the_first_model_name(cpuinfo: str, model: str) -> None:
    assert cpu_model(cpuinfo) == model


def test_the_plot_is_a_png_titled_with_the_run(tmp_path: Path) -> None:
    heading = title("2026-12-06", "AMD EPYC", 2, 3, 5)
    assert heading.startswith("2026-12-06, AMD EPYC (2 cores)")
    assert "ratios within this run only" in heading
    path = plot(tmp_path / "images" / "curve.png", CURVE, heading)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
