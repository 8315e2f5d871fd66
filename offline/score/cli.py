"""Score a CSV or Parquet file with the served artifact: ``python -m app.score INPUT OUTPUT``.

The same artifact, device (``HOUSING_ARTIFACTS``, ``HOUSING_DEVICE``) and validation as the
service. The file is streamed in chunks, so its size does not matter. OUTPUT (CSV or Parquet,
by its extension) gets the input's columns plus ``house_value``, its range
``house_value_low`` and ``house_value_high`` at ``--coverage`` (as ``/predict``'s; none with
``--coverage 0`` or a model without ranges) and ``warnings`` (``field:code`` pairs from
``app.core.flags``). Invalid rows are refused: left out and listed, with their line numbers (the
file's physical lines, from 1: the header is line 1), in ``OUTPUT.errors.csv`` (the first few
also on stderr); the run goes on. Every row read is scored or refused, and the summary line
says so: ``N rows read: S scored, R refused (see OUTPUT.errors.csv)``. How a file is read (one
record per line: a quoted cell may not span lines) is in ``offline.score.files``; a file refused
whole for its header (a column named twice, say) is listed as line 1, field ``header``.
Exit status: 0 when every row was scored; 3 when some were refused; 1 when none was scored
(no valid row, a refused file, or a startup error); 2 for invalid settings or options.

``--engine ray INPUT_DIR OUTPUT_DIR`` does the same work for a folder of files, fanned out over
Ray actors (``offline.score.ray_engine``; needs the ``scale`` extra).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import logging
import sys
import time
from pathlib import Path

from app.errors import StartupError
from app.settings import load_settings
from offline.score.files import HEADER, FileRefused, reader_for, writer_for
from offline.score.scoring import SHOWN_ERRORS, Progress, finish, load_scorer

SCALE_HINT = "the ray engine needs the scale extra: pip install 'housing-inference[scale]'"
# Options of the ray engine only, with their defaults (the local engine refuses them).
RAY_OPTIONS = {"format": None, "concurrency": None, "num_cpus": None, "neuron_cores": 0}


def score(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 2
    scorer, manifest, device = load_scorer(settings, args.coverage, args.chunk_rows)
    print(f"model {manifest.model_version} on {device}", file=sys.stderr, flush=True)
    reader = reader_for(args.input, args.chunk_rows)
    errors_path = args.errors or args.output.with_name(args.output.name + ".errors.csv")
    progress = Progress(sys.stderr, not args.no_progress)
    writer = writer_for(args.output)
    scored = refused = 0
    started = time.perf_counter()
    with errors_path.open("w", newline="", encoding="utf-8") as errors_file:
        errors_out = csv.writer(errors_file)
        errors_out.writerow(["line", "field", "message"])
        try:
            for chunk in reader.chunks():
                keep, records, errors = scorer.valid(chunk)
                writer.write(chunk, scorer.predict(keep, records))
                for i, field, message in errors:
                    line = chunk.lines[i]
                    if refused < SHOWN_ERRORS:
                        progress.note(f"line {line}: {field}: {message}")
                    errors_out.writerow([line, field, message])
                refused += len(chunk.rows) - len(keep)
                scored += len(keep)
                progress.show(reader.fraction_done, scored + refused)
        except FileRefused as exc:  # listed too, then said as any startup error (status 1)
            errors_out.writerow([exc.line, HEADER, str(exc)])
            raise
        finally:
            writer.close()
    progress.show(1.0, scored + refused, final=True)
    return finish(scored, refused, args.output, time.perf_counter() - started, errors_path)


def score_with_ray(args: argparse.Namespace) -> int:
    """The ray engine, imported only now: the serving image has no ray (the scale extra)."""
    try:
        engine = importlib.import_module("offline.score.ray_engine")
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in {"ray", "pyarrow", "pandas"}:
            raise StartupError(SCALE_HINT) from None
        raise
    code: int = engine.run(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.score", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "input", type=Path, help="a .csv (with a header) or .parquet file; a folder of them (ray)"
    )
    parser.add_argument(
        "output", type=Path, help="where to write: .csv or .parquet; a folder (ray)"
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process, one file (default); ray: a folder of files over Ray actors "
        "(RAY_ADDRESS: a cluster, else a local Ray)",
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=8192, help="rows read (ray: scored) at a time"
    )
    parser.add_argument(
        "--errors",
        type=Path,
        help="refused rows (default: OUTPUT.errors.csv, beside OUTPUT; also for a folder)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--coverage",
        type=float,
        help="coverage of the house_value_low/high columns: one of the model's calibrated "
        "coverages, or 0 for none (default: HOUSING_INTERVAL_COVERAGE, 0.9)",
    )
    ray_options = parser.add_argument_group("ray engine")
    ray_options.add_argument(
        "--format",
        choices=["csv", "parquet"],
        help="the files written into OUTPUT_DIR (default: the input files' format)",
    )
    ray_options.add_argument(
        "--concurrency",
        type=int,
        help="scoring actors, each loading the model once (default: the cluster's CPUs)",
    )
    ray_options.add_argument(
        "--num-cpus", type=int, help="CPUs of the local Ray started without RAY_ADDRESS"
    )
    ray_options.add_argument(
        "--neuron-cores",
        type=int,
        default=0,
        help="NeuronCores each actor reserves (Ray sets its NEURON_RT_VISIBLE_CORES); 0: none",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    if args.engine == "local":
        given = [k for k, default in RAY_OPTIONS.items() if getattr(args, k) != default]
        if given:
            options = ", ".join("--" + k.replace("_", "-") for k in given)
            parser.error(f"{options}: only with --engine ray")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return score(args) if args.engine == "local" else score_with_ray(args)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
