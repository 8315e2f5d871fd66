"""``python -m app.score --engine ray INPUT_DIR OUTPUT_DIR``: the local engine's work on a folder
of files, fanned out over Ray actors with Ray Data.

    pip install 'housing-inference[scale]'
    python -m app.score --engine ray houses/ scored/ --num-cpus 8    # a local Ray
    RAY_ADDRESS=head:6379 python -m app.score --engine ray /shared/in /shared/scored  # a cluster

* Read: every ``.csv`` (with a header) or ``.parquet`` file of INPUT_DIR (one kind, one set of
  columns) by the local engine's own readers (``offline.score.files``, whose rules apply: one
  record per line, physical line numbers), in blocks of ``--chunk-rows`` rows, each row with
  its file, row index and line (CSV: the header is line 1; Parquet: the row number) and the
  reader's refusal, if any. ``ray.data.read_csv`` parses with pyarrow and cannot say which line
  a row came from (nor refuses what the local reader refuses), so a small Datasource,
  ``LinedFiles``, does the reading (``offline.score.folders``): CSV cells stay the text that
  ``files.to_record`` parses, and an invalid row gets the local engine's error. A file refused
  whole for its header (a column named twice, say) refuses the run before any scoring: it is
  listed in the errors report (line 1, field ``header``) and said on stderr, exit status 1.
* Score: ``map_batches`` with the class ``ScoreBatches`` on ``--concurrency`` actors. Each loads
  the model once (``scoring.load_scorer``: HOUSING_ARTIFACTS on HOUSING_DEVICE, as the driver
  resolved them), validates and scores its batches with the local engine's Scorer and writes
  their rows with the local engine's writers, as
  ``OUTPUT_DIR/<input file's stem>.<first line, 10 digits>.<csv|parquet>``: the files in name
  order hold the input's rows in order, byte for byte as the local engine writes them (Ray's
  own writers quote every CSV string and name files by task). A batch returns only its errors
  and counts, so the scored rows never travel back through the object store.
* Report: the driver gathers the errors into ``OUTPUT_DIR.errors.csv`` (beside the folder,
  which then holds nothing but output files; columns file, line, field, message, sorted by
  file and line), prints the first few and the local engine's summary line (every row read:
  scored or refused). Exit status as the local engine's: 0 all scored, 3 some refused, 1 none
  scored, a refused file or a startup error.

Inferentia: each actor needs a NeuronCore of its own. ``--neuron-cores 1`` makes each actor
reserve one (``resources={"neuron_cores": 1}``, a resource Ray knows for Neuron), and Ray sets
the actor's NEURON_RT_VISIBLE_CORES; ``--concurrency`` then defaults to the cluster's
NeuronCores. On a cluster, HOUSING_ARTIFACTS, INPUT_DIR and OUTPUT_DIR must be paths every node
sees (a shared filesystem), and every node needs this project with the scale extra.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data import DataContext, Datasource, ReadTask
from ray.data.block import BlockMetadata

from app.errors import StartupError
from app.settings import Settings, load_settings
from offline.score.files import HEADER, Chunk, FileRefused, Kept, writer_for
from offline.score.folders import (
    FILE,
    KEYS,
    LINE,
    REFUSED,
    ROW,
    chunk_of,
    estimate_rows,
    input_files,
    read_file,
    runs,
)
from offline.score.scoring import (
    SHOWN_ERRORS,
    Progress,
    Scorer,
    finish,
    load_scorer,
    preflight,
)

STARTUP = "(startup)"
# What a batch returns: one row per error (file, line, field, message), then one per run of
# rows of one file (file, its first line, rows, scored; field and message null). An actor that
# could not load the model returns one row: field STARTUP, the StartupError's message.
RESULT = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("field", pa.string()),
        ("message", pa.string()),
        ("rows", pa.int64()),
        ("scored", pa.int64()),
    ]
)


class LinedFiles(Datasource):
    """One read task per file (``read_file``); Ray splits no file."""

    def __init__(self, files: list[Path], chunk_rows: int) -> None:
        super().__init__()
        self.files, self.chunk_rows = files, chunk_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(path.stat().st_size for path in self.files)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: DataContext | None = None,
    ) -> list[ReadTask]:
        return [
            ReadTask(
                partial(read_file, path, self.chunk_rows),
                BlockMetadata(
                    num_rows=None,
                    size_bytes=path.stat().st_size,
                    exec_stats=None,
                    input_files=(str(path),),
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for path in self.files
        ]


class ScoreBatches:
    """The map_batches class: one per actor, which loads the model once."""

    def __init__(
        self, settings: Settings, coverage: float | None, chunk_rows: int, output: Path, fmt: str
    ) -> None:
        self.output, self.suffix = output, f".{fmt}"
        self.scorer: Scorer | None = None
        self.failure = ""
        try:
            self.scorer = load_scorer(settings, coverage, chunk_rows)[0]
        except StartupError as exc:  # for the driver to say, as the local engine says it (an
            self.failure = str(exc)  # actor that raised would be retried, then a traceback)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.scorer is None:
            failed = ["", 0, STARTUP, self.failure, 0, 0]
            return pa.table({n: [v] for n, v in zip(RESULT.names, failed, strict=True)}, RESULT)
        files, index = batch.column(FILE).to_pylist(), batch.column(ROW).to_pylist()
        lines, refused = batch.column(LINE).to_pylist(), batch.column(REFUSED).to_pylist()
        data = batch.drop_columns(list(KEYS))
        columns, rows = list(data.column_names), data.to_pylist()
        out: dict[str, list[Any]] = {name: [] for name in RESULT.names}
        for start, end in runs(files, index):
            chunk = chunk_of(columns, rows[start:end], lines[start:end], refused[start:end])
            keep, records, errors = self.scorer.valid(chunk)
            if keep:
                self.write(files[start], chunk, self.scorer.predict(keep, records))
            found = [(chunk.lines[i], field, message, 0, 0) for i, field, message in errors]
            for values in [*found, (chunk.lines[0], None, None, len(chunk.rows), len(keep))]:
                for name, value in zip(RESULT.names, (files[start], *values), strict=True):
                    out[name].append(value)
        return pa.table(out, schema=RESULT)

    def write(self, name: str, chunk: Chunk, kept: Kept) -> None:
        path = self.output / f"{Path(name).stem}.{chunk.lines[0]:010d}{self.suffix}"
        hidden = path.with_name("." + path.name)  # until whole: folder readers skip dot files
        writer = writer_for(hidden)
        try:
            writer.write(chunk, kept)
        finally:
            writer.close()
        os.replace(hidden, path)  # a retried batch writes the same file again


def connect(num_cpus: int | None) -> bool:
    """Ray joined (RAY_ADDRESS, or a session this process already has) or started here with
    ``num_cpus``: True if started here, to be shut down by the caller."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS") and num_cpus is not None:
        raise StartupError(
            "--num-cpus is for a local Ray, and RAY_ADDRESS names a cluster. Hint: leave out "
            "--num-cpus (the cluster has its CPUs), or unset RAY_ADDRESS."
        )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home from here
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,  # the actors' warnings and errors, prefixed with their pid
    )
    return True


def quiet_ray_data() -> None:
    """Ray Data's console at warnings (its INFO lines on every run, the notice that its
    progress bars are off, which we turn off); its log files in the session keep everything."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def actors(concurrency: int | None, neuron_cores: int, torch_threads: int) -> int:
    """How many actors: ``concurrency``, or one per ``neuron_cores`` NeuronCores or per
    ``torch_threads`` CPUs of the cluster. StartupError for NeuronCores the cluster lacks (its
    actors would wait for them forever)."""
    resources = ray.cluster_resources()
    cores = int(resources.get("neuron_cores", 0))
    if neuron_cores and cores < neuron_cores:
        raise StartupError(
            f"--neuron-cores {neuron_cores}, and the Ray cluster has {cores} NeuronCores. "
            "Hint: on CPUs, leave out --neuron-cores."
        )
    if concurrency:
        return concurrency
    if neuron_cores:
        return cores // neuron_cores
    return max(1, int(resources.get("CPU", 2)) // torch_threads)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 2
    manifest = preflight(settings, args.coverage)
    output = args.output.resolve()
    errors_path = args.errors or output.with_name(output.name + ".errors.csv")
    try:
        files, kind = input_files(args.input)
    except FileRefused as exc:  # listed, as the local engine lists it; then said (status 1)
        write_errors(errors_path, [(exc.path.name, exc.line, HEADER, str(exc))])
        raise
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise StartupError(f"{output} is not an empty folder. Hint: remove it, or name another.")
    if args.concurrency is not None and args.concurrency < 1:
        raise StartupError("--concurrency must be at least 1")
    owned = connect(args.num_cpus)
    try:
        concurrency = actors(args.concurrency, args.neuron_cores, settings.torch_threads)
        print(
            f"model {manifest.model_version} on {settings.device} in {concurrency} Ray actors",
            file=sys.stderr,
            flush=True,
        )
        output.mkdir(parents=True, exist_ok=True)
        context = DataContext.get_current()
        context.enable_progress_bars = False  # ours instead, one line
        # Order comes from the output files' names: Ray Data need not keep it.
        context.execution_options.preserve_order = False
        quiet_ray_data()
        # Actors get the settings the driver validated, the artifacts' absolute path and no
        # API key. Reads reserve no CPU (with actors on every CPU, reads that need one never
        # start), so their number is capped instead: a reader feeds about 4 actors (~125k rows/s
        # read, ~35k scored by an actor here); uncapped, every file started a process at once.
        actor_settings = settings.model_copy(
            update={"artifacts": settings.artifacts.resolve(), "api_key": None}
        )
        dataset = ray.data.read_datasource(
            LinedFiles(files, args.chunk_rows),
            num_cpus=0,
            concurrency=max(1, concurrency // 4),
            override_num_blocks=len(files),
        ).map_batches(
            ScoreBatches,
            fn_constructor_args=(actor_settings, args.coverage, args.chunk_rows, output),
            fn_constructor_kwargs={"fmt": args.format or kind},
            batch_size=args.chunk_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=settings.torch_threads,
            resources={"neuron_cores": args.neuron_cores} if args.neuron_cores else None,
        )
        return report(dataset, args, output, errors_path, estimate_rows(files))
    finally:
        if owned:
            ray.shutdown()


def write_errors(path: Path, errors: Sequence[tuple[str, int | None, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "line", "field", "message"])
        out.writerows(errors)


def report(
    dataset: ray.data.Dataset, args: argparse.Namespace, output: Path, errors_path: Path, total: int
) -> int:
    """Run the pipeline: progress, the errors report, the summary line and the exit status."""
    progress = Progress(sys.stderr, not args.no_progress)
    errors: list[tuple[str, int, str, str]] = []
    rows = scored = 0
    started = time.perf_counter()
    tables: Iterable[pa.Table] = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    for table in tables:
        for r in table.to_pylist():
            if r["field"] is None:
                rows, scored = rows + r["rows"], scored + r["scored"]
            elif r["field"] == STARTUP:
                raise StartupError(r["message"])
            else:
                errors.append((r["file"], r["line"], r["field"], r["message"]))
        progress.show(min(rows / max(total, 1), 1.0), rows)
    progress.show(1.0, rows, final=True)
    seconds = time.perf_counter() - started
    errors.sort(key=lambda e: (e[0], e[1]))  # stable: a row's errors keep their order
    write_errors(errors_path, errors)
    for name, line, field, message in errors[:SHOWN_ERRORS]:
        progress.note(f"{name} line {line}: {field}: {message}")
    return finish(scored, rows - scored, output, seconds, errors_path)
