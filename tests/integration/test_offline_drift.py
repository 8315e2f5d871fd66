"""``python -m app.drift`` on captures made from the real data: none on rows like the
training split's, drift found (exit 1, the inputs named) on shifted ones; unreadable lines and
files skipped and counted, never a traceback; a report that cannot be written exits 2."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from app.observe.capture import capture_line
from offline.drift import main
from reliability.workload import oip_body
from tests.support.bodies import csv_body
from tests.support.oracle import eager_dollars
from tests.support.records import records
from training.data import split_frame

CSV, JSON = "text/csv", "application/json"


def write_capture(folder: Path, artifacts: Path, frame: pd.DataFrame) -> None:
    """``frame``'s rows as captured requests, 25 rows each, by CSV, /predict JSON and OIP in
    turn, each answered with the eager model's dollars; and one binary OIP request."""
    values = eager_dollars(artifacts, frame)
    lines = []
    for n, start in enumerate(range(0, len(frame), 25)):
        chunk = records(frame.iloc[start : start + 25])
        dollars = values[start : start + 25].round(2).tolist()
        if n % 3 == 0:
            request, answer = (
                (CSV, csv_body(chunk, header=True)),
                (CSV, "".join(f"{v}\n" for v in dollars).encode()),
            )
        elif n % 3 == 1:
            request = (JSON, orjson.dumps({"instances": chunk}))
            answer = (JSON, orjson.dumps({"predictions": dollars}))
        else:
            outputs = [{"name": "house_value", "datatype": "FP32", "shape": [25], "data": dollars}]
            request, answer = (JSON, oip_body(chunk)), (JSON, orjson.dumps({"outputs": outputs}))
        lines.append(capture_line(("/x", f"r{n}", "v", *request, *answer, 1.8e9)))
    lines.append(capture_line(("/x", "bin", "v", "application/octet-stream", b"\x00", JSON, b"{}",
                               1.8e9)))  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "capture.jsonl").write_bytes(b"".join(lines))


@pytest.fixture(scope="module")
def validation(housing_frame: pd.DataFrame) -> pd.DataFrame:
    return split_frame(housing_frame)[1].head(2500)


def test_rows_like_the_training_data_show_no_drift(
    tmp_path: Path, artifacts: Path, validation: pd.DataFrame
) -> None:
    write_capture(tmp_path / "capture", artifacts, validation)
    report_path = tmp_path / "drift.json"
    code = main(
        [str(tmp_path / "capture"), "--artifacts", str(artifacts), "--report", str(report_path)]
    )
    report = json.loads(report_path.read_text())
    assert code == 0, report
    assert report["rows"] == len(validation)
    assert report["skipped_requests"] == 1  # the binary one
    assert report["drifted"] == []
    assert all(f["psi"] < 0.1 for f in report["inputs"].values())
    assert report["prediction_psi"] < 0.1
    assert report["inputs"]["median_income"]["outside_training_range"] < 0.03


def test_shifted_rows_are_found_and_named(
    tmp_path: Path, artifacts: Path, validation: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    shifted = validation.assign(
        median_income=validation["median_income"] * 1.8,
        housing_median_age=np.minimum(validation["housing_median_age"] + 15, 52),
    )
    write_capture(tmp_path / "capture", artifacts, shifted)
    report_path = tmp_path / "drift.json"
    code = main(
        [str(tmp_path / "capture"), "--artifacts", str(artifacts), "--report", str(report_path)]
    )
    report = json.loads(report_path.read_text())
    assert code == 1
    assert {"median_income", "housing_median_age", "prediction"} <= set(report["drifted"])
    assert "latitude" not in report["drifted"]
    assert report["inputs"]["median_income"]["outside_training_range"] > 0.05
    assert "median_income" in capsys.readouterr().out


def test_a_manifest_without_a_training_distribution_says_to_retrain(
    tmp_path: Path, artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    manifest = json.loads((artifacts / "manifest.json").read_text())
    del manifest["drift"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(tmp_path), "--artifacts", str(folder)]) == 2
    assert "retrain with `python -m training`" in capsys.readouterr().err


def test_unreadable_lines_and_files_are_skipped_and_counted_without_a_traceback(
    tmp_path: Path, artifacts: Path, validation: pd.DataFrame
) -> None:
    folder = tmp_path / "capture"
    write_capture(folder, artifacts, validation)
    good = (folder / "capture.jsonl").read_bytes()
    torn = good.splitlines()[0][:300]  # what a full disk leaves at the end of a file
    (folder / "capture.jsonl").write_bytes(good + b'["valid JSON, not an object"]\n' + torn)
    (folder / "latin1.jsonl").write_bytes("d\u00e9j\u00e0 vu\n".encode("latin-1"))
    (folder / "notes.jsonl").write_text("this is not data capture's JSON Lines\n")
    report_path = tmp_path / "drift.json"
    proc = subprocess.run(
        [sys.executable, "-m", "app.drift", str(folder), "--artifacts", str(artifacts),
         "--report", str(report_path)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr  # rows like training's: no drift
    report = json.loads(report_path.read_text())
    assert report["rows"] == len(validation)
    assert (report["skipped_requests"], report["skipped_lines"], report["skipped_files"]) == (
        1,
        2,
        2,
    )
    assert [e.split(": ")[0] for e in report["skipped_examples"]] == [
        f"capture.jsonl:{len(good.splitlines()) + 1}",
        f"capture.jsonl:{len(good.splitlines()) + 2}",
        "latin1.jsonl",
        "notes.jsonl",
    ]
    first = proc.stdout.splitlines()[0]
    assert first.endswith("2 unreadable lines and 2 unreadable files skipped (skipped_examples "
                          "in the report)")  # fmt: skip


def test_a_report_that_fails_to_be_written_exits_2_with_one_line(
    tmp_path: Path,
    artifacts: Path,
    validation: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_capture(tmp_path / "capture", artifacts, validation.head(100))

    def full_disk(self: Path, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    code = main(
        [str(tmp_path / "capture"), "--artifacts", str(artifacts), "--report",
         str(tmp_path / "drift.json")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"cannot write the report to {tmp_path / 'drift.json'}: No space left on device\n"
