"""Data capture's records and files: SageMaker Data Capture's shape, hourly folders, size
rotation, and drops that never reach the caller: a full disk drops and counts records, leaves
no torn line, logs once, and capture resumes when space returns; the queue is bounded in
bytes."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

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


class Counts:
    """``on_write``/``on_drop`` callbacks that a test can wait on (the writer is a thread)."""

    def __init__(self) -> None:
        self.total = 0
        self._changed = threading.Condition()

    def __call__(self, n: int) -> None:
        with self._changed:
            self.total += n
            self._changed.notify_all()

    def wait_for(self, total: int, timeout: float = 10) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.total >= total, timeout), self.total
        assert self.total == total


class SmallDisk:
    """``os.write`` on a disk with ``room`` bytes left: a short write, then ENOSPC."""

    def __init__(self) -> None:
        self.room = 1 << 30
        self.failed = 0

    def write(self, fd: int, data: memoryview) -> int:
        if self.room <= 0:
            self.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, data[: self.room])
        self.room -= written
        return written


def _record(capture: Capture, request_id: str) -> None:
    capture.record("/predict", request_id, "v", ("application/json", b'{"a": 1}'), ("a", b"{}"))


def test_a_full_disk_drops_and_counts_leaves_no_torn_line_and_capture_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written, dropped, disk = Counts(), Counts(), SmallDisk()
    caplog.set_level(logging.INFO, logger="housing.capture")
    capture = Capture(tmp_path, 100, "w", written, dropped, write=disk.write)
    _record(capture, "before")
    written.wait_for(1)
    (path,) = tmp_path.rglob("*.jsonl")
    good = path.stat().st_size
    disk.room = 100  # less than a line: the next write stops short, then the disk is full
    for i in range(5):
        _record(capture, f"lost{i}")
    dropped.wait_for(5)
    assert disk.failed >= 1  # the fault really happened, after a short write
    assert path.stat().st_size == good  # the 100 bytes of a torn line were cut off
    assert [r["eventMetadata"]["eventId"] for r in _records(tmp_path)] == ["before"]  # type: ignore[index]
    assert capture._thread.is_alive()
    disk.room = 1 << 30  # space again
    _record(capture, "after")
    written.wait_for(2)
    capture.close()
    assert [r["eventMetadata"]["eventId"] for r in _records(tmp_path)] == ["before", "after"]  # type: ignore[index]
    assert (written.total, dropped.total) == (2, 5)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "capture:" in r.getMessage()]
    assert len(said) == 2, said  # once when it starts failing, once when it works again
    assert said[0][0] == logging.WARNING and "No space left on device" in said[0][1]
    assert said[1][0] == logging.INFO and "5 records were dropped" in said[1][1]


def test_a_folder_that_cannot_be_made_drops_records_until_it_can(tmp_path: Path) -> None:
    blocked = tmp_path / "capture"
    blocked.write_text("a file where the folder should be")
    written, dropped = Counts(), Counts()
    capture = Capture(blocked, 100, "w", written, dropped)
    for i in range(3):
        _record(capture, f"lost{i}")
    dropped.wait_for(3)
    blocked.unlink()  # the same capture, without a restart, writes again
    _record(capture, "kept")
    written.wait_for(1)
    capture.close()
    assert [r["eventMetadata"]["eventId"] for r in _records(blocked)] == ["kept"]  # type: ignore[index]


def test_the_queue_is_bounded_in_bytes_and_what_does_not_fit_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_write(fd: int, data: memoryview) -> int:
        entered.set()
        assert release.wait(10)
        return os.write(fd, data)

    written, dropped = Counts(), Counts()
    capture = Capture(tmp_path, 100, "w", written, dropped, queue_bytes=1000, write=slow_write)
    _record(capture, "first")  # taken off the queue by the writer, which then waits
    assert entered.wait(10)
    capture.record("/predict", "big", "v", ("text/csv", b"1" * 600), ("text/csv", b"2\n"))
    capture.record("/predict", "too-big", "v", ("text/csv", b"1" * 600), ("text/csv", b"2\n"))
    assert dropped.total == 1  # at once, in record(): it was never queued
    capture.record("/predict", "small", "v", ("text/csv", b"1" * 300), ("text/csv", b"2\n"))
    capture.record("/predict", "huge", "v", ("text/csv", b"1" * 2000), ("text/csv", b""))
    assert dropped.total == 2
    release.set()
    written.wait_for(3)
    capture.close()
    ids = [r["eventMetadata"]["eventId"] for r in _records(tmp_path)]  # type: ignore[index]
    assert ids == ["first", "big", "small"]
    assert capture._queued_bytes == 0
