"""``offline.drift`` on hostile captures and arguments: unreadable lines and files are skipped and
counted, requests with values of the wrong kind are skipped requests, and bad arguments exit 2
with one line on stderr before anything is read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.observe.capture import capture_line
from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS
from offline.drift import EXAMPLES, Captured, main, read_capture

JSON, CSV = "application/json", "text/csv"
ROW = ",".join(str(EXAMPLE_RECORD[c]) for c in RAW_COLUMNS)


def _line(request: tuple[str, bytes], answer: tuple[str, bytes], request_id: str = "r") -> bytes:
    return capture_line(("/predict", request_id, "v", *request, *answer, 1.8e9))


GOOD = _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b'{"house_value": 250000.0}'))


def test_unreadable_lines_and_files_are_skipped_and_counted(tmp_path: Path) -> None:
    hour = tmp_path / "2027" / "01" / "15" / "08"
    hour.mkdir(parents=True)
    torn = GOOD[: len(GOOD) // 2]  # what a full disk leaves
    (hour / "a.jsonl").write_bytes(
        GOOD + torn + b"\n" + b"[1, 2]\n" + b'{"captureData": 5}\n' + b"\n" + GOOD
    )
    (hour / "b.jsonl").write_bytes(b"\xff\xfe\x00 not utf-8\n\xc3\x28\n")  # not UTF-8
    (hour / "c.jsonl").write_text("id,value\n1,2\n")  # a stray file
    (hour / "d.jsonl").mkdir()  # a folder by that name
    (hour / "e.jsonl").write_bytes(b"")  # empty: nothing to skip
    captured = read_capture(tmp_path)
    assert (captured.requests, captured.skipped, len(captured.records)) == (2, 0, 2)
    assert captured.predictions == [250000.0, 250000.0]
    assert (captured.skipped_lines, captured.skipped_files) == (3, 3)
    assert len(captured.examples) == EXAMPLES
    assert captured.examples[0].startswith("2027/01/15/08/a.jsonl:2: ")
    assert captured.examples[3].startswith("2027/01/15/08/b.jsonl: no capture record")


def _read(tmp_path: Path, *lines: bytes) -> Captured:
    (tmp_path / "x.jsonl").write_bytes(GOOD + b"".join(lines))
    captured = read_capture(tmp_path)
    assert (captured.requests, captured.skipped_lines) == (1 + len(lines), 0)
    return captured


def test_requests_with_values_of_the_wrong_kind_are_skipped_requests(tmp_path: Path) -> None:
    one = (JSON, b'{"house_value": 1.0}')
    wrong = [
        _line((JSON, b'{"instances": [1, 2]}'), (JSON, b'{"predictions": [1.0, 2.0]}')),
        _line((JSON, orjson.dumps({**EXAMPLE_RECORD, "median_income": "8.3"})), one),
        _line((JSON, orjson.dumps({**EXAMPLE_RECORD, "median_income": True})), one),
        _line((JSON, orjson.dumps({**EXAMPLE_RECORD, "ocean_proximity": 3})), one),
        _line((CSV, ROW.replace("8.3252", "８.3252").encode()), (CSV, b"1.0\n")),  # full-width
        _line((CSV, ROW.replace("NEAR BAY", "NEAR BAY,extra").encode()), (CSV, b"1.0\n")),
        _line((CSV, ROW.encode()), (CSV, b"1_000\n")),  # not a plain number
        _line((CSV, ROW.encode()), (CSV, b"1.0\n2.0\n")),  # two predictions for one row
        _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b'{"house_value": "x"}')),
        _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b'{"house_value": null}')),
        _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b"[1.0]")),
        _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b'{"outputs": [1]}')),
        _line((JSON, orjson.dumps(EXAMPLE_RECORD)), (JSON, b"not json")),
        b'{"captureData": {"endpointInput": {"encoding": "JSON", "data": 5},'
        b' "endpointOutput": {"encoding": "JSON", "data": "{}"}}}\n',
    ]
    captured = _read(tmp_path, *wrong)
    assert (captured.skipped, len(captured.records)) == (len(wrong), 1)
    assert captured.predictions == [250000.0]


def test_a_strict_csv_row_is_read(tmp_path: Path) -> None:
    body = f"{','.join(RAW_COLUMNS)}\n{ROW}\n{ROW.replace(',', ' , ')}\n"  # header, spaces
    captured = _read(tmp_path, _line((CSV, body.encode()), (CSV, b"1\n2\n")))
    assert captured.skipped == 0
    assert captured.predictions == [250000.0, 1.0, 2.0]
    assert captured.records[1] == captured.records[2]
    assert captured.records[2]["median_income"] == EXAMPLE_RECORD["median_income"]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one line
    return err


@pytest.mark.parametrize("threshold", ["nan", "inf", "-1", "0"])
def test_a_threshold_that_is_not_a_positive_finite_number_exits_2(
    tmp_path: Path, threshold: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(tmp_path), "--threshold", threshold, "--report", str(tmp_path / "r.json")])
    assert code == 2
    assert f"--threshold {float(threshold)} must be a positive finite number" in _err(capsys)


@pytest.mark.parametrize(
    ("report", "said"),
    [("missing/drift.json", "there is no folder"), (".", "is a folder")],
)
def test_a_report_that_cannot_be_written_exits_2_before_anything_is_read(
    tmp_path: Path, report: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.jsonl").write_bytes(GOOD)
    code = main([str(tmp_path), "--report", str(tmp_path / report), "--artifacts", "nowhere"])
    assert code == 2  # before the manifest (which is missing) is even looked at
    assert said in _err(capsys)


def test_a_capture_dir_that_is_not_a_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(tmp_path / "none"), "--report", str(tmp_path / "r.json")])
    assert code == 2
    assert "is not a folder this user can read" in _err(capsys)
