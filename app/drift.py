"""Drift: captured requests against the training distribution the manifest records.

    python -m app.drift CAPTURE_DIR [--artifacts DIR] [--threshold 0.2] [--report drift.json]

Reads every ``*.jsonl`` file under ``CAPTURE_DIR`` (data capture: ``app.observe.capture``),
takes the raw records out of each request -- ``/predict`` and ``/invocations`` JSON, CSV rows,
OIP JSON tensors; OIP's binary tensors are counted as skipped -- and the predictions out of each
answer, and compares them with the manifest's ``DriftProfile`` (``modelspec.drift``):

* per numeric input and for ``ocean_proximity``: the population stability index (PSI) of the
  captured values' bins against the training split's;
* the share of captured rows with a value outside the training range that raises a warning
  (``app.flags``: the 0.5th-99.5th percentile), against about 1% per input in training;
* the predictions' PSI against the model's predictions on the training split.

Prints a table, writes the figures to ``--report`` (JSON) and exits 1 when any PSI passes
``--threshold`` (0.2: a shift worth acting on), 2 when nothing could be read, so a cron job or
CI can alert on it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.protocols.oip import OipError, records_from
from modelspec.drift import THRESHOLD, bin_shares, category_shares, psi
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, NUMERIC_COLUMNS, RAW_COLUMNS
from modelspec.manifest import ArtifactError, Manifest

Record = dict[str, Any]


@dataclass
class Captured:
    records: list[Record] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    requests: int = 0
    skipped: int = 0  # requests whose rows could not be read (binary OIP, broken lines)


def _csv_records(text: str) -> list[Record]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and rows[0][0].strip() == RAW_COLUMNS[0]:
        rows = rows[1:]  # a header line
    out = []
    for row in rows:
        cells = dict(zip(RAW_COLUMNS, row, strict=True))
        record: Record = {c: float(cells[c]) if cells[c] else None for c in NUMERIC_COLUMNS}
        record[CATEGORICAL_COLUMN] = cells[CATEGORICAL_COLUMN]
        out.append(record)
    return out


def request_records(given: dict[str, str]) -> list[Record]:
    """The raw records of a captured request; ValueError when they cannot be read."""
    encoding, data = given["encoding"], given["data"]
    if encoding == "CSV":
        return _csv_records(data)
    if encoding != "JSON":
        raise ValueError(f"{encoding} input is not read")
    body = orjson.loads(data)
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        try:
            return records_from(body, b"")
        except OipError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        return list(body["instances"])
    if isinstance(body, dict):
        return [body]
    raise ValueError("not a request body")


def answer_values(said: dict[str, str]) -> list[float]:
    """The predicted dollars of a captured answer."""
    if said["encoding"] == "CSV":
        return [float(line.split(",")[0]) for line in said["data"].splitlines() if line]
    body = orjson.loads(said["data"])
    if "outputs" in body:
        return next(o["data"] for o in body["outputs"] if o["name"] == "house_value")
    return body["predictions"] if "predictions" in body else [body["house_value"]]


def read_capture(folder: Path) -> Captured:
    captured = Captured()
    for path in sorted(folder.rglob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            data = orjson.loads(line)["captureData"]
            captured.requests += 1
            try:
                records = request_records(data["endpointInput"])
                values = answer_values(data["endpointOutput"])
            except (ValueError, KeyError, StopIteration, orjson.JSONDecodeError):
                captured.skipped += 1
                continue
            captured.records += records
            captured.predictions += values
    return captured


def drift_report(captured: Captured, manifest: Manifest, threshold: float) -> dict[str, Any]:
    profile = manifest.drift
    assert profile is not None
    columns = {
        c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in captured.records])
        for c in NUMERIC_COLUMNS
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
        "rows": len(captured.records),
        "training_rows": profile.rows,
        "threshold": threshold,
        "inputs": inputs,
        "missing_total_bedrooms": float(missing),
        "prediction_psi": prediction,
        "drifted": drifted,
    }


def lines(report: dict[str, Any]) -> list[str]:
    out = [
        f"{report['rows']} rows from {report['requests']} captured requests "
        f"({report['skipped_requests']} skipped) against {report['training_rows']} training rows",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture_dir", type=Path)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--report", type=Path, default=Path("drift.json"))
    args = parser.parse_args(argv)
    try:
        manifest = Manifest.load(args.artifacts)
    except ArtifactError as exc:
        print(f"cannot read the manifest: {exc}", file=sys.stderr)
        return 2
    if manifest.drift is None:
        print(
            "the manifest has no training distribution (trained before drift reports): "
            "retrain with `python -m training`",
            file=sys.stderr,
        )
        return 2
    captured = read_capture(args.capture_dir)
    if not captured.records:
        print(f"no readable captured requests under {args.capture_dir}", file=sys.stderr)
        return 2
    report = drift_report(captured, manifest, args.threshold)
    print("\n".join(lines(report)))
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["drifted"] else 0


if __name__ == "__main__":
    sys.exit(main())
