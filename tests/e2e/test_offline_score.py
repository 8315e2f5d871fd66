"""``python -m app.score INPUT OUTPUT`` as users run it, on files made from the real data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings
from tests.support.oracle import eager_dollars
from tests.support.project import ROOT
from tests.support.records import records
from tests.support.scoring import BAD_CELLS


def score(artifacts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOUSING_ARTIFACTS": str(artifacts), "HOUSING_DEVICE": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "app.score", *args, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory: pytest.TempPathFactory, housing_frame: pd.DataFrame) -> Path:
    frame = housing_frame.head(3000).astype(object)
    for row, column, cell, _ in BAD_CELLS:
        frame.loc[row, column] = cell
    frame.loc[60, "median_income"] = 15.0  # valid, but above the training range: a warning
    path = tmp_path_factory.mktemp("score") / "input.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_csv_with_bad_rows_is_scored_and_the_bad_rows_listed_by_line(
    artifacts: Path, bad_csv: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "scored.csv"
    done = score(artifacts, str(bad_csv), str(out), "--chunk-rows", "1000")
    assert done.returncode == 3, done.stderr  # some rows invalid, the rest scored
    report = tmp_path / "scored.csv.errors.csv"
    assert f"3,000 rows read: 2,996 scored, 4 refused (see {report}); " in done.stdout
    assert "rows/s" in done.stdout
    with report.open() as fh:
        errors = [(int(r["line"]), r["field"]) for r in csv.DictReader(fh)]
    # Data row i is line i + 2 of the file (the header is line 1).
    assert errors == [(row + 2, field) for row, _, _, field in BAD_CELLS]
    assert "Traceback" not in done.stderr

    scored = pd.read_csv(out)
    assert list(scored.columns[-4:]) == [
        "house_value",
        "house_value_low",
        "house_value_high",
        "warnings",
    ]
    # The ranges at the default coverage (0.9), as /predict's: around each value, never below 0.
    low, high = scored["house_value_low"], scored["house_value_high"]
    assert ((low >= 0) & (low <= scored["house_value"]) & (scored["house_value"] <= high)).all()
    bad = {row for row, *_ in BAD_CELLS}
    kept = housing_frame.head(3000).drop(index=list(bad))
    assert len(scored) == len(kept)
    kept = kept.assign(median_income=scored["median_income"].to_numpy(dtype=float))
    want = eager_dollars(artifacts, kept.reset_index(drop=True))
    np.testing.assert_allclose(scored["house_value"].to_numpy(), want, rtol=1e-5, atol=0.01)
    flagged = scored[scored["median_income"] == 15.0]["warnings"].tolist()
    assert flagged and "median_income:out_of_range" in flagged[0]


def test_parquet_in_and_out_gives_the_csv_answers(
    artifacts: Path, bad_csv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    source = tmp_path / "input.parquet"
    frame = pd.read_csv(bad_csv).drop(index=[row for row, *_ in BAD_CELLS])
    frame["median_income"] = frame["median_income"].astype(float)
    frame["latitude"] = frame["latitude"].astype(float)
    frame.to_parquet(source)
    done = score(artifacts, str(source), str(tmp_path / "out.parquet"), "--chunk-rows", "512")
    assert done.returncode == 0, done.stderr
    assert f"{len(frame):,} rows read: {len(frame):,} scored, 0 refused; " in done.stdout
    again = score(artifacts, str(source), str(tmp_path / "out.csv"))
    assert again.returncode == 0, again.stderr
    columns = ["house_value", "house_value_low", "house_value_high"]
    from_parquet = pd.read_parquet(tmp_path / "out.parquet")[columns].to_numpy()
    from_csv = pd.read_csv(tmp_path / "out.csv")[columns].to_numpy()
    assert len(from_parquet) == len(frame)
    np.testing.assert_allclose(from_parquet, from_csv, atol=0.01)


def test_the_range_columns_follow_the_coverage_and_match_predict(
    artifacts: Path, bad_csv: Path, tmp_path: Path
) -> None:
    source = tmp_path / "input.csv"
    pd.read_csv(bad_csv).drop(index=[row for row, *_ in BAD_CELLS]).head(20).to_csv(
        source, index=False
    )
    done = score(artifacts, str(source), str(tmp_path / "wide.csv"), "--coverage", "0.95")
    assert done.returncode == 0, done.stderr
    none = score(artifacts, str(source), str(tmp_path / "none.csv"), "--coverage", "0")
    assert none.returncode == 0, none.stderr
    assert list(pd.read_csv(tmp_path / "none.csv").columns[-2:]) == ["house_value", "warnings"]
    wrong = score(artifacts, str(source), str(tmp_path / "x.csv"), "--coverage", "0.42")
    assert wrong.returncode == 1
    assert "HOUSING_INTERVAL_COVERAGE=0.42 is not a calibrated coverage" in wrong.stderr
    # The same rows through the service's own code path (in-process): the same ranges.
    wide = pd.read_csv(tmp_path / "wide.csv")
    app = create_app(Settings(artifacts=artifacts, device="cpu"))
    with TestClient(app) as client:
        answer = client.post(
            "/predict?coverage=0.95", json={"instances": records(pd.read_csv(source))}
        ).json()
    want = [[r["low"], r["high"]] for r in answer["intervals"]]
    got = wide[["house_value_low", "house_value_high"]].to_numpy()
    np.testing.assert_allclose(got, want, atol=0.02)


def test_a_file_without_the_model_columns_is_refused_with_a_hint(
    artifacts: Path, tmp_path: Path
) -> None:
    source = tmp_path / "wrong.csv"
    source.write_text("a,b\n1,2\n")
    done = score(artifacts, str(source), str(tmp_path / "out.csv"))
    assert done.returncode == 1
    assert "has no column(s) longitude" in done.stderr and "Hint:" in done.stderr


def lines_of(frame: pd.DataFrame) -> list[str]:
    """The frame as the lines of a CSV file (header first, no line breaks)."""
    return frame.to_csv(index=False).splitlines()


def errors_of(report: Path) -> list[tuple[int, str]]:
    with report.open() as fh:
        return [(int(r["line"]), r["field"]) for r in csv.DictReader(fh)]


def test_every_row_read_is_scored_or_refused_with_its_line_and_counted(
    artifacts: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = housing_frame.head(30)
    lines = lines_of(frame)  # data row i is line i + 2
    lines[4] = lines[4].replace("NEAR BAY", '"NEAR BAY')  # line 5: a quote never closed
    lines[11] += ",1"  # line 12: 11 cells under 10 columns
    lines[14] = lines[14].rsplit(",", 1)[0]  # line 15: 9 cells
    source = tmp_path / "hostile.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    done = score(artifacts, str(source), str(out), "--chunk-rows", "4")
    assert done.returncode == 3, done.stderr
    report = tmp_path / "out.csv.errors.csv"
    assert f"30 rows read: 27 scored, 3 refused (see {report}); written to {out}" in done.stdout
    assert errors_of(report) == [(5, "row"), (12, "row"), (15, "row")]
    assert "line 5: row: not CSV: " in done.stderr
    # The rows after the open quote are scored, each once, with no cell dropped.
    scored = pd.read_csv(out)
    kept = frame.drop(index=[3, 10, 13]).reset_index(drop=True)
    pd.testing.assert_frame_equal(scored[list(frame.columns)], kept)


def test_lenient_numbers_are_refused_with_their_line_and_field(
    artifacts: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = housing_frame.head(8).astype(object)
    frame.loc[1, "total_rooms"] = "1_000"
    frame.loc[2, "housing_median_age"] = "\uff18"  # full-width 8
    frame.loc[4, "population"] = "\u0663"  # Arabic-Indic 3
    source = tmp_path / "numbers.csv"
    frame.to_csv(source, index=False)
    done = score(artifacts, str(source), str(tmp_path / "out.csv"))
    assert done.returncode == 3, done.stderr
    assert "8 rows read: 5 scored, 3 refused" in done.stdout
    errors = errors_of(tmp_path / "out.csv.errors.csv")
    assert errors == [(3, "total_rooms"), (4, "housing_median_age"), (6, "population")]


def test_a_byte_order_mark_is_read(
    artifacts: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "bom.csv"
    source.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines_of(housing_frame.head(5))).encode())
    done = score(artifacts, str(source), str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    assert "5 rows read: 5 scored, 0 refused; " in done.stdout
    assert pd.read_csv(tmp_path / "out.csv").columns[0] == "longitude"


def test_a_column_named_twice_refuses_the_file_in_the_errors_report(
    artifacts: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    lines = lines_of(housing_frame.head(5))
    source = tmp_path / "twice.csv"
    source.write_text("\n".join([lines[0] + ",median_income", *(x + ",1.0" for x in lines[1:])]))
    done = score(artifacts, str(source), str(tmp_path / "out.csv"))
    assert done.returncode == 1
    assert "names the column 'median_income' twice" in done.stderr and "Hint:" in done.stderr
    with (tmp_path / "out.csv.errors.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "field", "message"]
    assert [r[:2] for r in rows[1:]] == [["1", "header"]]
    assert "names the column 'median_income' twice" in rows[1][2]


def test_parquet_rows_are_scored_or_refused_and_counted(
    artifacts: Path, housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    frame = housing_frame.head(50).copy()
    frame.loc[3, "latitude"] = 95.0
    frame.loc[7, "median_income"] = None
    source = tmp_path / "input.parquet"
    frame.to_parquet(source)
    done = score(artifacts, str(source), str(tmp_path / "out.parquet"), "--chunk-rows", "16")
    assert done.returncode == 3, done.stderr
    assert "50 rows read: 48 scored, 2 refused (see " in done.stdout
    assert errors_of(tmp_path / "out.parquet.errors.csv") == [(4, "latitude"), (8, "median_income")]
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 48
