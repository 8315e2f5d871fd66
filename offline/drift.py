"""Drift: captured requests against the training distribution the manifest records.

    python -m app.drift CAPTURE_DIR [--artifacts DIR] [--threshold 0.2] [--report drift.json]

Reads every ``*.jsonl`` file under ``CAPTURE_DIR`` (data capture: ``app.observe.capture``),
takes the raw records out of each request -- ``/predict`` and ``/invocations`` JSON, CSV rows,
OIP JSON tensors; OIP's binary tensors are counted as skipped -- and the predictions out of each
answer, and compares them with the manifest's ``DriftProfile`` (``modelspec.drift``):

* per numeric input and for ``ocean_proximity``: the population stability index (PSI) of the
  captured values' bins against the training split's;
* the share of captured rows with a value outside the training range that raises a warning
  (``app.core.flags``: the 0.5th-99.5th percentile), against about 1% per input in training;
* the predictions' PSI against the model's predictions on the training split.

Captures are read as untrusted input; nothing in them stops the report:

* a line that is not a capture record (torn by a full disk, not JSON, not UTF-8, JSON that is
  not an object, without ``captureData``) is a skipped line (``skipped_lines``);
* a file that cannot be read, or whose lines are all unreadable (a stray file), is one skipped
  file (``skipped_files``), its lines not counted;
* a capture record whose request or answer cannot be read -- binary OIP, a CSV row of the wrong
  length or with a cell the server would refuse (``app.codecs.tabular.cell_value``: plain
  ASCII numbers), a JSON value of the wrong type or not finite, an answer without one
  prediction per row -- is a skipped request (``skipped_requests``).

The table's first line gives the counts; the report lists the first few skipped lines and
files (``skipped_examples``: ``path:line: why``).

Prints a table, writes the figures to ``--report`` (JSON) and exits, so a cron job or CI can
alert on it:

* 0: no PSI passes ``--threshold`` (0.2: a shift worth acting on);
* 1: drift: some PSI passes it;
* 2: the report cannot be made: a threshold that is not a positive finite number, an
  unreadable manifest, a ``CAPTURE_DIR`` that is not a folder or holds no readable request, a
  ``--report`` that cannot be written (checked before the captures are read) -- one line on
  stderr that says what to fix, never a traceback; argparse's usage errors exit 2 too.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.codecs.numbers import strict_float
from app.codecs.oip import OipError, records_from
from app.codecs.tabular import cell_value
from modelspec.drift import THRESHOLD, bin_shares, category_shares, psi
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, NUMERIC_COLUMNS, RAW_COLUMNS
from modelspec.manifest import ArtifactError, Manifest

Value = float | str | None
Record = dict[str, Value]
EXAMPLES = 5  # skipped lines and files named in the report, at most
# Everything reading a hostile line can raise: JSON, UTF-8 and number errors are ValueErrors.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError, StopIteration,
              OverflowError, RecursionError, OipError)  # fmt: skip


@dataclass
class Captured:
    records: list[Record] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    requests: int = 0
    skipped: int = 0  # requests whose rows could not be read (binary OIP, bad values)
    skipped_lines: int = 0  # lines that are not capture records
    skipped_files: int = 0  # files that cannot be read or hold no capture record
    examples: list[str] = field(default_factory=list)  # the first EXAMPLES skipped, "where: why"

    def skip(self, where: str, why: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {why[:200]}")


def _number(value: object) -> float | None:
    """A captured number, as the service takes it: a JSON number (not a bool), finite."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r:.40} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{number} is not finite")
    return number


def _record(raw: object) -> Record:
    """A request's record with each input checked: numbers, and a text category."""
    if not isinstance(raw, dict):
        raise TypeError("a record is not an object")
    record: Record = {c: _number(raw.get(c)) for c in NUMERIC_COLUMNS}
    category = raw.get(CATEGORICAL_COLUMN)
    if category is not None and not isinstance(category, str):
        raise TypeError(f"{CATEGORICAL_COLUMN} is not text")
    record[CATEGORICAL_COLUMN] = category
    return record


def _csv_records(text: str) -> list[Record]:
    """CSV rows read as the server reads them (``cell_value``: strict ASCII numbers)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and rows[0][0].strip() == RAW_COLUMNS[0]:
        rows = rows[1:]  # a header line
    out = []
    for row in rows:
        cells = dict(zip(RAW_COLUMNS, row, strict=True))  # ValueError: a row of another length
        out.append(_record({c: cell_value(c, cells[c]) for c in RAW_COLUMNS}))
    return out


def request_records(given: Mapping[str, object]) -> list[Record]:
    """The raw records of a captured request; ValueError (or another of ``UNREADABLE``) when
    they cannot be read."""
    encoding, data = given["encoding"], given["data"]
    if not isinstance(data, str):
        raise TypeError("data is not text")
    if encoding == "CSV":
        return _csv_records(data)
    if encoding != "JSON":
        raise ValueError(f"{encoding} input is not read")
    body = orjson.loads(data)
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        return [_record(r) for r in records_from(body, b"")]
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        return [_record(r) for r in body["instances"]]
    if isinstance(body, dict):
        return [_record(body)]
    raise ValueError("not a request body")


def _predictions(values: object) -> list[float]:
    if not isinstance(values, list):
        raise TypeError("predictions are not a list")
    out = []
    for value in values:
        number = _number(value)
        if number is None:
            raise ValueError("a prediction is missing")
        out.append(number)
    return out


def answer_values(said: Mapping[str, object]) -> list[float]:
    """The predicted dollars of a captured answer."""
    data = said["data"]
    if not isinstance(data, str):
        raise TypeError("data is not text")
    if said["encoding"] == "CSV":
        return [strict_float(line.split(",")[0].strip(" \t")) for line in data.splitlines() if line]
    body = orjson.loads(data)
    if not isinstance(body, dict):
        raise TypeError("the answer is not an object")
    if "outputs" in body:
        return _predictions(next(o["data"] for o in body["outputs"] if o["name"] == "house_value"))
    return _predictions(body["predictions"] if "predictions" in body else [body["house_value"]])


def _read_line(line: bytes, captured: Captured) -> str | None:
    """Add one line's request to ``captured``; why not, when the line is not a capture
    record."""
    try:
        document = orjson.loads(line)
        data = document["captureData"]
        given, said = data["endpointInput"], data["endpointOutput"]
        if not isinstance(given, dict) or not isinstance(said, dict):
            raise TypeError("endpointInput and endpointOutput are not objects")
    except UNREADABLE as exc:
        return f"not a capture record: {type(exc).__name__}: {exc}"
    captured.requests += 1
    try:
        records = request_records(given)
        values = answer_values(said)
        if len(values) != len(records):
            raise ValueError(f"{len(values)} predictions for {len(records)} rows")
    except UNREADABLE:
        captured.skipped += 1
        return None
    captured.records += records
    captured.predictions += values
    return None


def read_capture(folder: Path) -> Captured:
    """Every capture file under ``folder``, read a line at a time (a file is never held
    whole), with what could not be read counted (see the module docstring)."""
    captured = Captured()
    for path in sorted(folder.rglob("*.jsonl")):
        where = str(path.relative_to(folder))
        bad: list[tuple[int, str]] = []  # the first EXAMPLES lines that are not records
        bad_count = good = 0
        try:
            with path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    why = _read_line(line, captured)
                    if why is None:
                        good += 1
                        continue
                    bad_count += 1
                    if len(bad) < EXAMPLES:
                        bad.append((number, why))
        except OSError as exc:  # unreadable, a folder named *.jsonl (lines read before stay)
            captured.skipped_files += 1
            captured.skip(where, exc.strerror or str(exc))
            continue
        if bad_count and not good:  # a stray file, not data capture's: one skipped file
            captured.skipped_files += 1
            captured.skip(where, f"no capture record in it (line {bad[0][0]}: {bad[0][1]})")
            continue
        captured.skipped_lines += bad_count
        for number, why in bad:
            captured.skip(f"{where}:{number}", why)
    return captured


def drift_report(captured: Captured, manifest: Manifest, threshold: float) -> dict[str, Any]:
    profile = manifest.drift
    assert profile is not None
    # Numeric inputs are floats or None (``_record``, ``_csv_records``); None becomes NaN.
    columns = {
        c: np.array([r.get(c) for r in captured.records], dtype=np.float64) for c in NUMERIC_COLUMNS
    }
    inputs: dict[str, dict[str, float]] = {}
    ranges = manifest.preprocessing.input_ranges
    for c in NUMERIC_COLUMNS:
        binned = profile.numeric[c]
        values = columns[c]
        low, high = ranges.get(c, (-np.inf, np.inf))
        present = values[~np.isnan(values)]
        outside = float(np.mean((present < low) | (present > high))) if len(present) else 0.0
        inputs[c] = {
            "psi": psi(binned.shares, bin_shares(values, binned.edges)),
            "outside_training_range": outside,
        }
    expected = profile.categories[CATEGORICAL_COLUMN]
    seen = category_shares([str(r.get(CATEGORICAL_COLUMN)) for r in captured.records])
    names = sorted(set(expected) | set(seen))
    inputs[CATEGORICAL_COLUMN] = {
        "psi": psi([expected.get(n, 0.0) for n in names], [seen.get(n, 0.0) for n in names])
    }
    missing = np.mean([r.get(IMPUTED_COLUMN) is None for r in captured.records])
    prediction = psi(
        profile.prediction.shares,
        bin_shares(np.asarray(captured.predictions), profile.prediction.edges),
    )
    drifted = [c for c, f in inputs.items() if f["psi"] > threshold]
    if prediction > threshold:
        drifted.append("prediction")
    return {
        "model_version": manifest.model_version,
        "requests": captured.requests,
        "skipped_requests": captured.skipped,
        "skipped_lines": captured.skipped_lines,
        "skipped_files": captured.skipped_files,
        "skipped_examples": captured.examples,
        "rows": len(captured.records),
        "training_rows": profile.rows,
        "threshold": threshold,
        "inputs": inputs,
        "missing_total_bedrooms": float(missing),
        "prediction_psi": prediction,
        "drifted": drifted,
    }


def lines(report: dict[str, Any]) -> list[str]:
    unread = ""
    if report["skipped_lines"] or report["skipped_files"]:
        unread = (
            f"; {report['skipped_lines']} unreadable lines and {report['skipped_files']} "
            "unreadable files skipped (skipped_examples in the report)"
        )
    out = [
        f"{report['rows']} rows from {report['requests']} captured requests "
        f"({report['skipped_requests']} skipped) against {report['training_rows']} training rows"
        + unread,
        f"{'input':<20} {'PSI':>7} {'outside range':>14}",
    ]
    for name, f in report["inputs"].items():
        outside = f.get("outside_training_range")
        shown = "" if outside is None else f"{outside:>13.1%}"
        mark = "  DRIFT" if name in report["drifted"] else ""
        out.append(f"{name:<20} {f['psi']:>7.3f} {shown:>14}{mark}")
    mark = "  DRIFT" if "prediction" in report["drifted"] else ""
    out.append(f"{'prediction':<20} {report['prediction_psi']:>7.3f}{'':>15}{mark}")
    verdict = ", ".join(report["drifted"]) or "none"
    out.append(f"PSI above {report['threshold']}: {verdict}")
    return out


def _report_problem(path: Path) -> str | None:
    """Why the report cannot be written to ``path``, if it cannot: checked before the read."""
    if path.is_dir():
        return f"--report {path} is a folder: name a file in it"
    if not path.parent.is_dir():
        return f"--report {path}: there is no folder {path.parent}: create it, or name another"
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        return f"--report {path} cannot be written (no permission): name a file you can write"
    return None


def _run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.threshold) and args.threshold > 0):
        return _fail(
            f"--threshold {args.threshold} must be a positive finite number (a PSI: 0.2 is a "
            "shift worth acting on)"
        )
    problem = _report_problem(args.report)
    if problem is not None:
        return _fail(problem)
    folder = args.capture_dir
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        return _fail(
            f"{folder} is not a folder this user can read: give the folder data capture "
            "writes to (HOUSING_CAPTURE_DIR)"
        )
    try:
        manifest = Manifest.load(args.artifacts)
    except (ArtifactError, OSError) as exc:
        return _fail(f"cannot read the manifest: {exc}")
    if manifest.drift is None:
        return _fail(
            "the manifest has no training distribution (trained before drift reports): "
            "retrain with `python -m training`"
        )
    try:
        captured = read_capture(folder)
    except OSError as exc:
        return _fail(f"cannot read {folder}: {exc}")
    if not captured.records:
        first = f" (first: {captured.examples[0]})" if captured.examples else ""
        return _fail(
            f"no readable captured requests under {folder}: {captured.requests} requests, "
            f"{captured.skipped_lines} unreadable lines, {captured.skipped_files} unreadable "
            f"files{first}"
        )
    report = drift_report(captured, manifest, args.threshold)
    print("\n".join(lines(report)))
    try:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        return _fail(f"cannot write the report to {args.report}: {exc.strerror or exc}")
    return 1 if report["drifted"] else 0


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture_dir", type=Path)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--report", type=Path, default=Path("drift.json"))
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
