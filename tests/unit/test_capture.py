"""Data capture's records and files: SageMaker Data Capture's shape, hourly folders, size
rotation, and drops that never reach the caller."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.observe.capture import Capture, capture_line

AT = datetime(2026, 11, 30, 3, 55, 6, 123000, tzinfo=UTC).timestamp()


def test_a_record_is_a_sagemaker_data_capture_line() -> None:
    line = capture_line(
        ("/predict", "req-1", "abc123", "application/json", b'{"a": 1}', "application/json",
         b'{"house_value": 1.0}', AT)
    )  # fmt: skip
    assert line.endswith(b"\n")
    record = json.loads(line)
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/json",
                "mode": "INPUT",
                "data": '{"a": 1}',
                "encoding": "JSON",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": '{"house_value": 1.0}',
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": "req-1",
            "inferenceTime": "2026-11-30T03:55:06.123Z",
            "modelVersion": "abc123",
            "route": "/predict",
        },
        "eventVersion": "0",
    }


def test_csv_stays_text_and_binary_is_base64() -> None:
    csv = json.loads(capture_line(("/invocations", "r", "v", "text/csv", b"1,2\n", "text/csv",
                                   b"3\n", AT)))  # fmt: skip
    assert csv["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert csv["captureData"]["endpointInput"]["data"] == "1,2\n"
    raw = b"\x00\x01\xff"
    binary = json.loads(capture_line(("/v2/models/housing/infer", "r", "v",
                                      "application/octet-stream", raw, "application/json",
                                      b"{}", AT)))  # fmt: skip
    given = binary["captureData"]["endpointInput"]
    assert given["encoding"] == "BASE64" and base64.b64decode(given["data"]) == raw


def _records(folder: Path) -> list[dict[str, object]]:
    files = sorted(folder.rglob("*.jsonl"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


def test_files_go_in_hourly_folders_and_rotate_by_size(tmp_path: Path) -> None:
    written: list[int] = []
    capture = Capture(tmp_path, 100, "w0-1", written.append, lambda n: None, max_file_bytes=1000)
    for i in range(20):
        capture.record("/predict", f"r{i}", "v", ("application/json", b"{}" * 100), ("a", b""))
    capture.close()
    files = sorted(tmp_path.rglob("*.jsonl"))
    assert len(files) > 1  # about 700 bytes a line, 1000 a file
    assert all(f.parent.relative_to(tmp_path).parts[0].isdigit() for f in files)  # YYYY/...
    assert all(f.name.endswith("-w0-1.jsonl") for f in files)
    assert [r["eventMetadata"]["eventId"] for r in _records(tmp_path)] == [  # type: ignore[index]
        f"r{i}" for i in range(20)
    ]
    assert sum(written) == 20


def test_a_failed_write_drops_and_counts_the_record_and_the_next_one_is_written(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "capture"
    blocked.write_text("a file where the folder should be")
    dropped: list[int] = []
    capture = Capture(blocked, 100, "w", lambda n: None, dropped.append)
    capture.record("/predict", "lost", "v", ("application/json", b"{}"), ("a", b""))
    capture.close()
    assert dropped == [1]
    blocked.unlink()  # the disk has room again
    capture = Capture(blocked, 100, "w", lambda n: None, dropped.append)
    capture.record("/predict", "kept", "v", ("application/json", b"{}"), ("a", b""))
    capture.close()
    assert [r["eventMetadata"]["eventId"] for r in _records(blocked)] == ["kept"]  # type: ignore[index]


def test_the_sample_follows_the_percentage() -> None:
    none, all_ = Capture.__new__(Capture), Capture.__new__(Capture)
    none.share, all_.share = 0.0, 1.0
    assert not any(none.sampled() for _ in range(1000))
    assert all(all_.sampled() for _ in range(1000))
    some = Capture.__new__(Capture)
    some.share = 0.25
    hits = sum(some.sampled() for _ in range(20_000))
    assert 4_000 < hits < 6_000
