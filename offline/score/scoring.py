"""What both engines of ``python -m app.score`` share: the Scorer (validation and prediction of
one chunk of rows, as the service does them), how it is loaded, and the progress line.

The local engine (``offline.score.cli``) runs one Scorer over a file; the Ray engine
(``offline.score.ray_engine``) runs one in each of its actors, over batches of a folder's files.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import ValidationError

from app.backends.base import Backend
from app.codecs.schemas import request_adapter
from app.core.flags import Flagger
from app.core.intervals import Coverage, log_scale_range, prices
from app.core.served import load_model, serving_intervals, verify_artifacts
from app.errors import StartupError, validation_details
from app.settings import Settings
from modelspec.features import encode_records
from modelspec.manifest import ArtifactError, Manifest
from offline.score.files import Chunk, Kept, to_record

SHOWN_ERRORS = 10  # refused rows also shown on stderr (all of them are in the errors report)

# An invalid row's error: its index in the chunk, the field and the reason.
RowError = tuple[int, str, str]


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal (at most every 0.2 s), one line
    every 5 s in a log."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out, self.enabled = out, enabled
        self.tty = out.isatty()
        self.started = self._last = time.perf_counter()

    def show(self, fraction: float, rows: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < (0.2 if self.tty else 5) and not final):
            return
        self._last = now
        bar = "#" * int(fraction * 30)
        rate = rows / max(now - self.started, 1e-9)
        line = f"[{bar:<30}] {fraction:4.0%} {rows:,} rows {rate:,.0f} rows/s"
        self.out.write(f"\r{line}" + ("\n" if final else "") if self.tty else f"{line}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """A line of its own, not glued to the bar."""
        self.out.write(("\r\033[K" if self.tty and self.enabled else "") + text + "\n")


class Scorer:
    def __init__(
        self,
        backend: Backend,
        median: float,
        flagger: Flagger,
        chunk_rows: int,
        coverage: Coverage | None,
        log_scales: tuple[float, float],
    ):
        self.backend, self.median, self.flagger = backend, median, flagger
        self.adapter = request_adapter(chunk_rows)
        self.largest = max(backend.batch_sizes)
        self.coverage, self.log_scales = coverage, log_scales

    def valid(self, chunk: Chunk) -> tuple[list[int], list[dict[str, object]], list[RowError]]:
        """The indices and records of the chunk's valid rows, and the errors of the others as
        ``(index in the chunk, field, message)``, in row order (a row's own in field order).
        Every row is one or the other; the reader's refusals (``Chunk.refused``) are errors."""
        errors: list[RowError] = []
        keep: list[int] = []
        records: list[dict[str, object]] = []
        for i, row in enumerate(chunk.rows):
            if i in chunk.refused:
                errors.append((i, *chunk.refused[i]))
                continue
            try:
                records.append(to_record(row))
                keep.append(i)
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                errors.append((i, field, message))
        try:
            self.adapter.validate_python({"instances": records})
            return keep, records, errors
        except ValidationError as exc:
            bad: dict[int, list[dict[str, str]]] = defaultdict(list)
            for detail in validation_details(exc.errors()):
                where = detail["field"].split(".")  # instances.<i>.<field>
                bad[int(where[1])].append({**detail, "field": ".".join(where[2:]) or "row"})
        for i in sorted(bad):
            errors += [(keep[i], d["field"], d["message"]) for d in bad[i]]
        errors.sort(key=lambda e: e[0])  # stable: a row's errors keep their order
        good = [j for j in range(len(records)) if j not in bad]
        return [keep[j] for j in good], [records[j] for j in good], errors

    def predict(self, keep: list[int], records: list[dict[str, object]]) -> Kept:
        """The chunk's rows ``keep`` (parsed as ``records``) scored: dollars, notes and (with a
        coverage) ranges, as the service gives them (``app.core.intervals``)."""
        encoded = encode_records(records, self.median)
        out = prices(
            np.concatenate(
                [
                    self.backend.predict(encoded[i : i + self.largest])
                    for i in range(0, len(encoded), self.largest)
                ]
            )
            if len(encoded)
            else np.zeros(0),
            self.log_scales,
        )
        values = out[:, 0] if out.ndim == 2 else out
        notes: list[list[str]] = [[] for _ in records]
        for flag in self.flagger.flags(encoded, values):
            notes[flag["row"]].append(f"{flag['field']}:{flag['code']}")
        bounds = None
        if self.coverage is not None:  # its model returns scales (``serving_intervals``)
            scales = out[:, 1].tolist() if len(encoded) else []
            bounds = self.coverage.ranges(values.tolist(), scales).bounds
        return Kept(keep, records, values.tolist(), [";".join(n) for n in notes], bounds)


def coverage_of(settings: Settings, coverage: float | None) -> float:
    """``--coverage``, or the service's default (``HOUSING_INTERVAL_COVERAGE``)."""
    return settings.interval_coverage if coverage is None else coverage


def load_scorer(
    settings: Settings, coverage: float | None, chunk_rows: int
) -> tuple[Scorer, Manifest, str]:
    """The artifact verified, loaded on its device and warmed up (``app.core.served.load_model``),
    its rules and ranges at ``coverage``: a Scorer, its manifest and device. StartupError with
    a hint on any failure."""
    manifest, device, backend = load_model(settings)
    intervals = serving_intervals(manifest, coverage_of(settings, coverage))
    scorer = Scorer(
        backend,
        manifest.preprocessing.total_bedrooms_median,
        Flagger(manifest.preprocessing.input_ranges),
        chunk_rows,
        intervals.default,
        log_scale_range(manifest.intervals),
    )
    return scorer, manifest, device


def preflight(settings: Settings, coverage: float | None) -> Manifest:
    """The checks of ``load_scorer`` that need no device (the artifacts, the coverage), with the
    same messages: a driver that hands the loading to workers fails early and readably."""
    try:
        manifest, _ = verify_artifacts(settings.artifacts)
    except ArtifactError as exc:
        raise StartupError(str(exc)) from None
    serving_intervals(manifest, coverage_of(settings, coverage))
    return manifest


def finish(scored: int, refused: int, output: Path, seconds: float, errors_path: Path) -> int:
    """Print the run's summary line, which accounts for every row read (scored, or refused and
    listed in the errors report); its exit status: 0 when every row was scored, 3 when some
    were refused, 1 when none was scored."""
    rows = scored + refused
    print(
        f"{rows:,} rows read: {scored:,} scored, {refused:,} refused"
        + (f" (see {errors_path})" if refused else "")
        + f"; written to {output} in {seconds:.1f}s ({rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
    if not scored:
        return 1
    return 3 if refused else 0
