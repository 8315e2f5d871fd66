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

Never at the expense of serving: ``record`` only puts the bodies in a bounded queue, and one
writer thread turns them into lines and writes them. A full queue (the disk is slow) or a failed
write (the disk is full) drops records and counts them (``housing_capture_dropped_total``);
neither blocks nor fails a prediction.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

logger = logging.getLogger("housing.capture")

QUEUE_RECORDS = 10_000
MAX_FILE_BYTES = 64 * 1024 * 1024
TEXT_ENCODINGS = {"application/json": "JSON", "text/csv": "CSV"}

# (route, request id, model version, request type, request body, answer type, answer body, time)
Record = tuple[str, str, str, str, bytes, str, bytes, float]


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


class Capture:
    """The sampler, the bounded queue and its writer thread. ``on_drop(n)`` counts dropped
    records, ``on_write(n)`` written ones."""

    def __init__(
        self,
        folder: Path,
        percent: float,
        worker: str,
        on_write: Callable[[int], None],
        on_drop: Callable[[int], None],
        max_file_bytes: int = MAX_FILE_BYTES,
        queue_records: int = QUEUE_RECORDS,
    ) -> None:
        self.folder = folder
        self.share = percent / 100
        self.worker = worker
        self._on_write, self._on_drop = on_write, on_drop
        self.max_file_bytes = max_file_bytes
        self._queue: queue.Queue[Record | None] = queue.Queue(queue_records)
        self._file: IO[bytes] | None = None
        self._hour = ""
        self._written = 0
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
        """Queue one prediction (never blocks: a full queue drops it, counted)."""
        try:
            self._queue.put_nowait((route, request_id, version, *request, *answer, time.time()))
        except queue.Full:
            self._on_drop(1)

    def close(self, timeout: float = 5) -> None:
        """Write what is queued (for up to ``timeout``), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _write_all(self) -> None:
        while (record := self._queue.get()) is not None:
            line = capture_line(record)
            try:
                self._target(record[-1]).write(line)
                self._written += len(line)
            except OSError as exc:  # a full disk, a folder gone: drop, say so, try again later
                self._on_drop(1)
                self._close_file()
                logger.warning("capture: dropped a record: %s", exc)
                continue
            self._on_write(1)
            if self._queue.empty() and self._file is not None:
                self._file.flush()
        self._close_file()

    def _target(self, at: float) -> IO[bytes]:
        when = datetime.fromtimestamp(at, UTC)
        hour = when.strftime("%Y/%m/%d/%H")
        if self._file is None or hour != self._hour or self._written >= self.max_file_bytes:
            self._close_file()
            folder = self.folder / hour
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{when.strftime('%Y%m%dT%H%M%S%fZ')}-{self.worker}.jsonl"
            self._file = open(folder / name, "ab")  # noqa: SIM115 - kept open across records
            self._hour, self._written = hour, 0
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def worker_name() -> str:
    """``w<index>-<pid>`` for a supervisor's worker, else ``<pid>``: file names never clash."""
    index = os.environ.get("HOUSING_WORKER_INDEX")
    return f"w{index}-{os.getpid()}" if index is not None else str(os.getpid())
