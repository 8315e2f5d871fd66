"""Score a CSV or Parquet file with the served artifact: ``python -m app.score INPUT OUTPUT``.

The same artifact, device (``HOUSING_ARTIFACTS``, ``HOUSING_DEVICE``) and validation as the
service. The file is streamed in chunks, so its size does not matter. OUTPUT (CSV or Parquet,
by its extension) gets the input's columns plus ``house_value``, its range
``house_value_low`` and ``house_value_high`` at ``--coverage`` (as ``/predict``'s; none with
``--coverage 0`` or a model without ranges) and ``warnings`` (``field:code`` pairs from
``app.flags``). Invalid rows are left out and listed, with their
line numbers, in ``OUTPUT.errors.csv`` (the first few also on stderr); the run goes on.
Exit status: 0 when every row was scored, 3 when some were invalid, 1 when nothing could be.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import ValidationError

from app.__main__ import load_settings
from app.backends.base import Backend
from app.errors import StartupError, validation_details
from app.flags import Flagger
from app.intervals import Coverage, log_scale_range, prices
from app.schemas import request_adapter
from app.score.files import Chunk, Kept, reader_for, to_record, writer_for
from app.served import load_model, serving_intervals
from modelspec.features import encode_records

SHOWN_ERRORS = 10


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

    def valid(self, chunk: Chunk) -> tuple[list[int], list[dict[str, object]], list[list[str]]]:
        """The indices and records of the chunk's valid rows, and the errors of the others as
        ``[line, field, message]``."""
        errors: list[list[str]] = []
        keep: list[int] = []
        records: list[dict[str, object]] = []
        for i, row in enumerate(chunk.rows):
            try:
                records.append(to_record(row))
                keep.append(i)
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                errors.append([str(chunk.lines[i]), field, message])
        try:
            self.adapter.validate_python({"instances": records})
            return keep, records, errors
        except ValidationError as exc:
            bad: dict[int, list[dict[str, str]]] = defaultdict(list)
            for detail in validation_details(exc.errors()):
                where = detail["field"].split(".")  # instances.<i>.<field>
                bad[int(where[1])].append({**detail, "field": ".".join(where[2:]) or "row"})
        for i in sorted(bad):
            errors += [[str(chunk.lines[keep[i]]), d["field"], d["message"]] for d in bad[i]]
        good = [j for j in range(len(records)) if j not in bad]
        return [keep[j] for j in good], [records[j] for j in good], errors

    def predict(self, keep: list[int], records: list[dict[str, object]]) -> Kept:
        """The chunk's rows ``keep`` (parsed as ``records``) scored: dollars, notes and (with a
        coverage) ranges, as the service gives them (``app.intervals``)."""
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


def score(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 2
    manifest, device, backend = load_model(settings)
    print(f"model {manifest.model_version} on {device}", file=sys.stderr, flush=True)
    flagger = Flagger(manifest.preprocessing.input_ranges)
    coverage = settings.interval_coverage if args.coverage is None else args.coverage
    intervals = serving_intervals(manifest, coverage)
    scorer = Scorer(
        backend,
        manifest.preprocessing.total_bedrooms_median,
        flagger,
        args.chunk_rows,
        intervals.default,
        log_scale_range(manifest.intervals),
    )
    reader = reader_for(args.input, args.chunk_rows)
    errors_path = args.errors or args.output.with_name(args.output.name + ".errors.csv")
    progress = Progress(sys.stderr, not args.no_progress)
    writer = writer_for(args.output)
    scored = invalid = 0
    started = time.perf_counter()
    with errors_path.open("w", newline="", encoding="utf-8") as errors_file:
        errors_out = csv.writer(errors_file)
        errors_out.writerow(["line", "field", "message"])
        try:
            for chunk in reader.chunks():
                keep, records, errors = scorer.valid(chunk)
                writer.write(chunk, scorer.predict(keep, records))
                for line, field, message in sorted(errors, key=lambda e: int(e[0])):
                    if invalid < SHOWN_ERRORS:
                        progress.note(f"line {line}: {field}: {message}")
                    errors_out.writerow([line, field, message])
                invalid += len(chunk.rows) - len(keep)
                scored += len(keep)
                progress.show(reader.fraction_done, scored + invalid)
        finally:
            writer.close()
    progress.show(1.0, scored + invalid, final=True)
    seconds = time.perf_counter() - started
    print(
        f"scored {scored:,} rows into {args.output} in {seconds:.1f}s "
        f"({(scored + invalid) / max(seconds, 1e-9):,.0f} rows/s); {invalid:,} invalid rows"
        + (f", listed in {errors_path}" if invalid else "")
    )
    if not scored:
        return 1
    return 3 if invalid else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.score", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("input", type=Path, help="a .csv (with a header) or .parquet file")
    parser.add_argument("output", type=Path, help="where to write: .csv or .parquet")
    parser.add_argument("--chunk-rows", type=int, default=8192, help="rows read at a time")
    parser.add_argument("--errors", type=Path, help="invalid rows (default: OUTPUT.errors.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--coverage",
        type=float,
        help="coverage of the house_value_low/high columns: one of the model's calibrated "
        "coverages, or 0 for none (default: HOUSING_INTERVAL_COVERAGE, 0.9)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return score(args)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
