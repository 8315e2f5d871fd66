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

from app.main import create_app
from app.settings import Settings
from reliability.server import ROOT
from reliability.workload import eager_dollars
from tests.integration.conftest import records

# (data row, column, bad cell, the field the error must name)
BAD_CELLS = [
    (5, "median_income", "abc", "median_income"),
    (10, "latitude", "95", "latitude"),
    (20, "ocean_proximity", "MOON", "ocean_proximity"),
    (40, "housing_median_age", "", "housing_median_age"),
]


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
    assert "scored 2,996 rows" in done.stdout and "rows/s" in done.stdout
    with (tmp_path / "scored.csv.errors.csv").open() as fh:
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
