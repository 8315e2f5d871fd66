"""Data capture: a sampled share of predictions written as JSON Lines, in the record shape of
SageMaker Data Capture, so the tools that read SageMaker's captures read these.

One line per captured request::

    {"captureData": {"endpointInput": {"observedContentType": "application/json",
                                        "mode": "INPUT", "data": "...", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json",
                                        "mode": "OUTPUT", "data": "...", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<request id>", "inferenceTime": "2026-11-30T03:55:06.123Z",
                       "modelVersion": "1d620b252281", "route": "/predict"},
     "eventVersion": "0"}

``data`` is the body as it came and went: text for JSON and CSV (``encoding`` ``JSON``,
``CSV``), base64 for anything else (OIP's binary tensors: ``BASE64``). ``modelVersion`` and
``route`` are this service's additions to ``eventMetadata``.

Files: ``HOUSING_CAPTURE_DIR/YYYY/MM/DD/HH/<time>-<worker>.jsonl``, a new one every hour and
whenever one passes ``max_file_bytes``.

Never at the expense of serving: ``record`` only puts the bodies in a queue bounded both in
records (``queue_records``) and in bytes of request and answer bodies (``queue_bytes``,
``HOUSING_CAPTURE_QUEUE_BYTES``); a record the queue cannot take (the disk is slow, or the
bodies are large) is dropped and counted (``housing_capture_dropped_total``) at once, never
buffered. Neither blocks nor fails a prediction.

One writer thread turns records into lines and writes them, and survives its disk:

* Lines are gathered in memory (up to ``WRITE_BYTES``, or until the queue is empty) and written
  with ``os.write`` on an unbuffered descriptor opened ``O_APPEND``, so nothing sits in a
  library buffer whose flush could fail later. The writer knows the file's length after its
  last whole write; when a write fails or stops short (``ENOSPC``, ``EIO``), the file is cut
  back to that length (``os.ftruncate``), so no half-written line is left to be read as a
  record. Should even that fail, the file is closed and the next line goes to a new one; the
  torn tail stays, and readers (``offline.drift``) skip lines they cannot read.
* Any failure -- ``mkdir``, ``open``, ``write``, ``ftruncate``, ``close`` -- drops the records
  it concerns, counts them (``on_drop``) and is logged once per episode: one warning when
  writes start failing, one info line when a write works again, with how many records were
  dropped in between. The thread keeps running; every later record tries again (a new folder,
  a new file), so capture resumes by itself when space returns.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

logger = logging.getLogger("housing.capture")

QUEUE_RECORDS = 10_000
QUEUE_BYTES = 64 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024
WRITE_BYTES = 1024 * 1024  # lines gathered into one write at most (one line may pass it)
TEXT_ENCODINGS = {"application/json": "JSON", "text/csv": "CSV"}
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)

# (route, request id, model version, request type, request body, answer type, answer body, time)
Record = tuple[str, str, str, str, bytes, str, bytes, float]
# os.write's shape: write some of the bytes to a descriptor, return how many were written.
Write = Callable[[int, memoryview], int]


def _payload(kind: str, body: bytes, mode: str) -> dict[str, str]:
    media = kind.split(";", 1)[0].strip().lower()
    encoding = TEXT_ENCODINGS.get(media)
    if encoding is not None:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = None
    if encoding is None:
        encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
    return {"observedContentType": kind, "mode": mode, "data": data, "encoding": encoding}


def capture_line(record: Record) -> bytes:
    """One JSON line in SageMaker Data Capture's shape (see the module docstring)."""
    route, request_id, version, in_kind, in_body, out_kind, out_body, at = record
    when = datetime.fromtimestamp(at, UTC)
    return (
        orjson.dumps(
            {
                "captureData": {
                    "endpointInput": _payload(in_kind, in_body, "INPUT"),
                    "endpointOutput": _payload(out_kind, out_body, "OUTPUT"),
                },
                "eventMetadata": {
                    "eventId": request_id,
                    "inferenceTime": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "modelVersion": version,
                    "route": route,
                },
                "eventVersion": "0",
            }
        )
        + b"\n"
    )


def _size(record: Record) -> int:
    """The bytes a queued record holds: its request and answer bodies."""
    return len(record[4]) + len(record[6])


class Capture:
    """The sampler, the bounded queue and its writer thread. ``on_drop(n)`` counts dropped
    records, ``on_write(n)`` written ones. ``write`` is the system call that writes to a file
    (``os.write``; tests pass one that fails like a full disk)."""

    def __init__(
        self,
        folder: Path,
        percent: float,
        worker: str,
        on_write: Callable[[int], None],
        on_drop: Callable[[int], None],
        max_file_bytes: int = MAX_FILE_BYTES,
        queue_records: int = QUEUE_RECORDS,
        queue_bytes: int = QUEUE_BYTES,
        *,
        write: Write = os.write,
    ) -> None:
        self.folder = folder
        self.share = percent / 100
        self.worker = worker
        self._on_write, self._on_drop = on_write, on_drop
        self.max_file_bytes = max_file_bytes
        self.queue_bytes = queue_bytes
        self._queue: queue.Queue[Record | None] = queue.Queue(queue_records)
        self._queued_bytes = 0  # bodies in the queue; record() adds, the writer takes away
        self._lock = threading.Lock()
        self._write = write
        self._fd: int | None = None
        self._hour = ""
        self._written = 0  # the file's length after its last whole write
        self._lines = bytearray()  # gathered lines, not yet written
        self._gathered = 0  # records in self._lines
        self._failing = False  # in a failure episode (logged once when it starts)
        self._lost = 0  # records dropped by failures in this episode
        self._thread = threading.Thread(target=self._write_all, name="capture", daemon=True)
        self._thread.start()
        logger.info("capturing %g%% of predictions into %s", percent, folder)

    def sampled(self) -> bool:
        return self.share >= 1 or random.random() < self.share

    def record(
        self,
        route: str,
        request_id: str,
        version: str,
        request: tuple[str, bytes],
        answer: tuple[str, bytes],
    ) -> None:
        """Queue one prediction (never blocks: what the queue cannot take, in records or in
        bytes, is dropped and counted)."""
        record = (route, request_id, version, *request, *answer, time.time())
        size = _size(record)
        with self._lock:
            fits = self._queued_bytes + size <= self.queue_bytes
            if fits:
                self._queued_bytes += size
        if fits:
            try:
                self._queue.put_nowait(record)
                return
            except queue.Full:
                with self._lock:
                    self._queued_bytes -= size
        self._on_drop(1)

    def close(self, timeout: float = 5) -> None:
        """Write what is queued (for up to ``timeout``), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _write_all(self) -> None:
        while (record := self._queue.get()) is not None:
            with self._lock:
                self._queued_bytes -= _size(record)
            added = False
            try:
                line = capture_line(record)
                when = datetime.fromtimestamp(record[-1], UTC)
                if self._file_for(when):
                    self._lines += line
                    self._gathered += 1
                    added = True
                    if len(self._lines) >= WRITE_BYTES or self._queue.empty():
                        self._write_lines()
            except Exception as exc:  # a bug must not end capture: drop, count, go on
                self._failed(self._gathered + (0 if added else 1), exc)
                self._lines.clear()
                self._gathered = 0
        self._write_lines()
        self._close_file()

    def _file_for(self, when: datetime) -> bool:
        """Make sure a file is open for a line of ``when``: on a new hour, or when the file is
        full, write the gathered lines and open a new one. False (the record dropped and
        counted) when none can be opened."""
        hour = when.strftime("%Y/%m/%d/%H")
        if (
            self._fd is not None
            and hour == self._hour
            and self._written + len(self._lines) < self.max_file_bytes
        ):
            return True
        self._write_lines()
        self._close_file()
        folder = self.folder / hour
        name = f"{when.strftime('%Y%m%dT%H%M%S%fZ')}-{self.worker}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / name, _OPEN_FLAGS, 0o644)
        except OSError as exc:  # a full disk, a folder gone: drop, try again next record
            self._failed(1, exc)
            return False
        try:
            self._written = os.fstat(fd).st_size
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.close(fd)
            self._failed(1, exc)
            return False
        self._fd, self._hour = fd, hour
        return True

    def _write_lines(self) -> None:
        """Write the gathered lines whole, or drop them (counted) and cut the file back to its
        last whole line. Never raises."""
        if not self._lines:
            return
        # A copy: the bytearray can be cleared whatever the write call kept of its argument.
        fd, data, count = self._fd, memoryview(bytes(self._lines)), self._gathered
        done = 0
        try:
            if fd is None:
                raise OSError(errno.EBADF, "no capture file is open")
            while done < len(data):
                written = self._write(fd, data[done:])
                if written <= 0:
                    raise OSError(errno.ENOSPC, "a write made no progress")
                done += written
        except Exception as exc:  # OSError from the disk; anything else is a bug, also counted
            if done and fd is not None:
                try:
                    os.ftruncate(fd, self._written)
                except OSError:  # the torn tail stays: leave this file for a new one
                    self._close_file()
            self._failed(count, exc)
        else:
            self._written += done
            self._on_write(count)
            self._recovered()
        finally:
            self._lines.clear()
            self._gathered = 0

    def _failed(self, count: int, exc: BaseException) -> None:
        if count:
            self._on_drop(count)
        self._lost += count
        if not self._failing:
            self._failing = True
            logger.warning(
                "capture: writing to %s failed (%s); dropping records (counted in "
                "housing_capture_dropped_total) until writes work again: free space there "
                "or point HOUSING_CAPTURE_DIR at a larger disk",
                self.folder,
                exc,
                exc_info=not isinstance(exc, OSError),  # not the disk: a bug, show where
            )

    def _recovered(self) -> None:
        if self._failing:
            logger.info(
                "capture: writing to %s again; %d records were dropped while it failed",
                self.folder,
                self._lost,
            )
            self._failing, self._lost = False, 0

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:  # the lines were written; the episode is still logged
                self._failed(0, exc)


def worker_name(index: int | None) -> str:
    """``w<index>-<pid>`` for a supervisor's worker (``HOUSING_WORKER_INDEX``), else
    ``<pid>``: file names never clash."""
    return f"w{index}-{os.getpid()}" if index is not None else str(os.getpid())
