"""The Ray engine's folders, without Ray or torch (its read tasks import only this): which
files of INPUT_DIR are scored, about how many rows they hold, and each file read by the local
engine's own reader (``offline.score.files``) into pyarrow tables that carry each row's origin
and, for a record the reader refused (not CSV, the wrong number of cells), its refusal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet

from app.errors import StartupError
from offline.score.files import Chunk, CsvReader, ParquetReader, columns_of

# Each read row's origin, and "field: reason" for a record the reader refused (else null).
FILE, ROW, LINE, REFUSED = KEYS = ("__file", "__row", "__line", "__refused")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def input_files(folder: Path) -> tuple[list[Path], str]:
    """INPUT_DIR's data files in name order and their kind ("csv" or "parquet"), or
    StartupError: no such folder, no data files, both kinds, files whose columns differ;
    FileRefused (``offline.score.files``) for the first file refused whole for its header.
    Names starting with "." or "_" (as Spark's _SUCCESS) and other extensions are skipped."""
    if not folder.is_dir():
        hint = " Hint: for one file, leave out --engine ray." if folder.is_file() else ""
        raise StartupError(f"no input folder at {folder}.{hint}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith((".", "_"))
    )
    if not files:
        raise StartupError(f"{folder} has no .csv or .parquet files")
    kinds = {SUFFIXES[p.suffix.lower()]: p.name for p in files}
    if len(kinds) > 1:
        raise StartupError(
            f"{folder} has both CSV and Parquet files ({kinds['csv']}, {kinds['parquet']}). "
            "Hint: one kind per folder: move the others to a folder of their own."
        )
    stems = {p.stem for p in files}
    if len(stems) < len(files):
        raise StartupError(f"{folder} has files that differ only in their extension")
    first = columns_of(files[0])
    for path in files[1:]:
        if (columns := columns_of(path)) != first:
            raise StartupError(
                f"{path.name} has the columns {','.join(columns)}, {files[0].name} has "
                f"{','.join(first)}. Hint: a folder is scored as one table: every file needs "
                "the same columns, in the same order."
            )
    if clash := [c for c in first if c in KEYS]:
        raise StartupError(f"{files[0]} has a column named {clash[0]}, which the engine uses")
    return files, kinds.popitem()[0]


def estimate_rows(files: list[Path]) -> int:
    """About how many rows the files hold, for the progress bar, without reading them: Parquet's
    footers; for CSV, their sizes at the bytes per line of the first file's first MiB."""
    if SUFFIXES[files[0].suffix.lower()] == "parquet":
        return sum(pa.parquet.read_metadata(path).num_rows for path in files)
    with files[0].open("rb") as fh:
        sample = fh.read(1 << 20)
    per_line = len(sample) / max(sample.count(b"\n"), 1)
    return max(int(sum(path.stat().st_size for path in files) / per_line) - len(files), 0)


def read_file(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """A file in tables of ``chunk_rows`` rows (CSV: every cell as text) and ``KEYS``."""
    if SUFFIXES[path.suffix.lower()] == "parquet":
        for batch, first in ParquetReader(path, chunk_rows).batches():
            index = range(first - 1, first - 1 + batch.num_rows)  # lines: from 1, as the local
            table = pa.Table.from_batches([batch])
            yield _keyed(table, path.name, index, [i + 1 for i in index], [None] * len(index))
        return
    row = 0
    for chunk in CsvReader(path, chunk_rows).chunks():
        # Every cell as text; a refused record's cells null (it has none).
        schema = pa.schema([(c, pa.string()) for c in chunk.columns])
        cells = pa.Table.from_pylist(chunk.rows, schema=schema)
        index = range(row, row + len(chunk.rows))
        row += len(chunk.rows)
        refused: list[str | None] = [None] * len(chunk.rows)
        for i, (where, reason) in chunk.refused.items():
            refused[i] = f"{where}: {reason}"
        yield _keyed(cells, path.name, index, chunk.lines, refused)


def _keyed(
    table: pa.Table,
    name: str,
    index: Sequence[int],
    lines: Sequence[int],
    refused: Sequence[str | None],
) -> pa.Table:
    keys = (
        pa.array([name] * table.num_rows, pa.string()),
        *(pa.array(k, pa.int64()) for k in (index, lines)),
        pa.array(refused, pa.string()),
    )
    for key, column in zip(KEYS, keys, strict=True):
        table = table.append_column(key, column)
    return table


def chunk_of(
    columns: list[str], rows: list[dict[str, Any]], lines: list[int], refused: list[str | None]
) -> Chunk:
    """The local engine's Chunk of a run of rows read by ``read_file``, with its refusals."""
    chunk = Chunk(columns, rows, lines)
    for i, text in enumerate(refused):
        if text is not None:
            where, _, reason = text.partition(": ")
            chunk.refused[i] = (where, reason)
    return chunk


def runs(files: list[str], index: list[int]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each run of consecutive rows of one file in a batch (Ray may join
    the end of one file's block to the start of another's)."""
    start = 0
    for i in range(1, len(files) + 1):
        if i == len(files) or files[i] != files[i - 1] or index[i] != index[i - 1] + 1:
            yield start, i
            start = i
