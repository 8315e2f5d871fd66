"""Reading and writing scored files in chunks: CSV with the standard library, Parquet with
pyarrow (imported only for Parquet files). Nothing ever holds more than one chunk.

Every record read is either kept for scoring or refused with its line and reason (``Chunk``):
none is dropped, trimmed or merged into another, so rows read = rows scored + rows refused.

CSV (``CsvReader``):

* One record per line. Each physical line is parsed as CSV on its own (``csv``, strict), so a
  quoted cell may not span lines: a quote left open, or text after a closing quote, refuses
  that line alone (field ``row``, "not CSV"), and the next line is the next record. (A reader
  that let an open quote run on would swallow the following lines into one cell, unseen.)
* Lines are the file's physical lines, from 1, as an editor numbers them: the header is line 1
  and blank lines count. A line of nothing but spaces and commas is no record: it is skipped.
* A line with more or fewer cells than the header has columns is refused (field ``row``): no
  cell is dropped and none made up.
* UTF-8; a byte-order mark before the header is skipped; bytes that are not UTF-8 are read as
  U+FFFD (so a number or category holding one is refused; a carried-through cell keeps it).
* Line 1 is the header, and a bad one refuses the whole file (``FileRefused``, a StartupError:
  nothing is scored, exit status 1, and the error is listed in the errors report as line 1,
  field ``header``): an empty file, a header that is not CSV, a model column missing, or a
  column named twice (neither of the two cells could be chosen over the other).

Parquet (``ParquetReader``): the schema is the header, with the same checks (a refusal has no
line); rows are numbered from 1. Cells that are text are parsed as CSV cells are.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.codecs.tabular import BOM as TEXT_BOM
from app.codecs.tabular import cell_value
from app.errors import StartupError
from modelspec.features import IMPUTED_COLUMN, RAW_COLUMNS

OUTPUT_COLUMNS = ("house_value", "house_value_low", "house_value_high", "warnings")
RANGE_COLUMNS = ("house_value_low", "house_value_high")  # only when the run has ranges
BOM = TEXT_BOM.encode()  # UTF-8's byte-order mark, which spreadsheet exports put first
HEADER = "header"  # the field of a file-level error


class FileRefused(StartupError):
    """A file refused whole for its header (CSV) or schema (Parquet): none of it is scored.
    ``line``: where (1, a CSV's header; None, a Parquet schema)."""

    def __init__(self, message: str, path: Path, line: int | None) -> None:
        super().__init__(message)
        self.path, self.line = path, line


@dataclass
class Chunk:
    columns: list[str]  # the input's columns, in its order
    rows: list[dict[str, Any]]  # as read: strings from CSV, typed values from Parquet
    lines: list[int]  # each row's line in the file (CSV, header = 1) or row number (Parquet)
    # Records the reader refused (not CSV, the wrong number of cells): their index in ``rows``
    # (where they hold no cells) -> (field, reason). Read and refused, as an invalid value is.
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)

    def refuse(self, line: int, where: str, reason: str) -> None:
        self.refused[len(self.rows)] = (where, reason)
        self.rows.append({})
        self.lines.append(line)


@dataclass
class Kept:
    """A chunk's scored rows: their indices in the chunk, parsed fields, dollars, notes, and
    each row's range (None: no ranges, and no range columns)."""

    index: list[int]
    records: list[dict[str, Any]]
    values: list[float]
    notes: list[str]
    bounds: list[tuple[float, float]] | None = None

    def answers(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each kept row's index in the chunk and its output columns, in order."""
        bounds = self.bounds if self.bounds is not None else [None] * len(self.values)
        for i, value, note, b in zip(self.index, self.values, self.notes, bounds, strict=True):
            out: dict[str, Any] = {"house_value": value}
            if b is not None:
                out["house_value_low"], out["house_value_high"] = b
            out["warnings"] = note
            yield i, out


class Reader(Protocol):
    fraction_done: float

    def chunks(self) -> Iterator[Chunk]: ...


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - makes pa.parquet available
    except ImportError:
        raise StartupError(
            "Parquet needs pyarrow. Hint: `pip install pyarrow`, or convert the file to CSV."
        ) from None
    return pa


def check_columns(columns: list[str], path: Path, line: int | None) -> None:
    """FileRefused at ``line`` for a model column missing or any column named twice."""
    missing = [c for c in RAW_COLUMNS if c not in columns and c != IMPUTED_COLUMN]
    if missing:
        raise FileRefused(
            f"{path} has no column(s) {', '.join(missing)}. Hint: the file needs the data set's "
            f"columns by name: {', '.join(RAW_COLUMNS)} (total_bedrooms may be absent).",
            path,
            line,
        )
    first: dict[str, int] = {}
    for number, name in enumerate(columns, start=1):
        if name in first:
            raise FileRefused(
                f"{path} names the column {name!r} twice (columns {first[name]} and {number}): "
                "neither can be chosen over the other, so none of the file is scored. Hint: "
                "rename or remove one of them.",
                path,
                line,
            )
        first[name] = number


def line_text(raw: bytes) -> str:
    """A physical line as text, without its line break."""
    return raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")


def cells_of(text: str) -> list[str]:
    """One line's cells, parsed on their own (a quoted cell may not span lines); csv.Error
    with the reason for a quote left open or text after a closing quote."""
    if '"' not in text and "\r" not in text:  # what csv gives, without a reader a line
        return text.split(",") if text else []
    return next(csv.reader((text,), strict=True), [])


def not_csv(exc: csv.Error) -> str:
    reason = str(exc).partition(" - ")[0]  # csv's own hint is about opening files
    return (
        f"not CSV: {reason}. Hint: each line is one record: a quoted cell must close on its "
        'line, and a quote inside it is doubled ("").'
    )


def header_of(path: Path, first: bytes | None) -> list[str]:
    """A CSV's columns from its first line (raw, None for an empty file), or FileRefused."""
    if not first:
        raise FileRefused(f"{path} is empty. Hint: a CSV needs a header line.", path, 1)
    try:
        cells = cells_of(line_text(first.removeprefix(BOM)))
    except csv.Error as exc:
        raise FileRefused(f"{path}: its header (line 1) is {not_csv(exc)}", path, 1) from None
    columns = [c.strip() for c in cells]
    check_columns(columns, path, 1)
    return columns


def add_line(chunk: Chunk, number: int, text: str) -> None:
    """Line ``number``'s record kept in ``chunk``, or refused there; nothing for a blank line."""
    if not text.strip():
        return
    try:
        cells = cells_of(text)
    except csv.Error as exc:
        chunk.refuse(number, "row", not_csv(exc))
        return
    if all(not c.strip() for c in cells):
        return
    if len(cells) != len(chunk.columns):
        chunk.refuse(
            number,
            "row",
            f"{len(cells)} cells, and the header has {len(chunk.columns)} columns. Hint: one "
            "cell a column (an empty one for a missing value); quote a cell that holds a comma.",
        )
        return
    chunk.rows.append(dict(zip(chunk.columns, cells, strict=True)))
    chunk.lines.append(number)


class CsvReader:
    """A CSV with a header line, read by the rules of the module docstring; extra columns are
    carried through to the output."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self._size = max(path.stat().st_size, 1)
        self._read = 0
        self.fraction_done = 0.0

    def _lines(self, fh: io.BufferedReader) -> Iterator[bytes]:
        for raw in fh:
            self._read += len(raw)
            yield raw

    def chunks(self) -> Iterator[Chunk]:
        with self.path.open("rb") as fh:
            lines = self._lines(fh)
            columns = header_of(self.path, next(lines, None))
            chunk = Chunk(columns, [], [])
            for number, raw in enumerate(lines, start=2):
                add_line(chunk, number, line_text(raw))
                if len(chunk.rows) >= self.chunk_rows:
                    self.fraction_done = self._read / self._size
                    yield chunk
                    chunk = Chunk(columns, [], [])
            self.fraction_done = 1.0
            if chunk.rows:
                yield chunk


class ParquetReader:
    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self.fraction_done = 0.0

    def batches(self) -> Iterator[tuple[Any, int]]:
        """The file's pyarrow record batches and each one's first row number (1-based)."""
        pa = _pyarrow()
        source = pa.parquet.ParquetFile(self.path)
        check_columns(list(source.schema_arrow.names), self.path, None)
        total, done = max(source.metadata.num_rows, 1), 0
        for batch in source.iter_batches(batch_size=self.chunk_rows):
            done += batch.num_rows
            self.fraction_done = done / total
            yield batch, done - batch.num_rows + 1

    def chunks(self) -> Iterator[Chunk]:
        for batch, first in self.batches():
            rows = batch.to_pylist()
            yield Chunk(batch.schema.names, rows, list(range(first, first + len(rows))))


def columns_of(path: Path) -> list[str]:
    """A file's columns (a CSV's header, a Parquet file's schema), checked as its reader checks
    them: FileRefused with a hint."""
    if not is_parquet(path):
        with path.open("rb") as fh:
            return header_of(path, fh.readline())
    columns = list(_pyarrow().parquet.read_schema(path).names)
    check_columns(columns, path, None)
    return columns


def reader_for(path: Path, chunk_rows: int) -> Reader:
    if not path.is_file():
        raise StartupError(f"no input file at {path}")
    return ParquetReader(path, chunk_rows) if is_parquet(path) else CsvReader(path, chunk_rows)


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """The raw fields of a row, as the service's validator takes them; ValueError names the
    field. CSV cells are text, parsed as ``/invocations`` parses them; Parquet's are typed."""
    record: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        value = row.get(name)
        if isinstance(value, str):
            try:
                value = cell_value(name, value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if isinstance(value, float) and math.isnan(value):
            value = None
        if value is None and name != IMPUTED_COLUMN:
            raise ValueError(f"{name}: missing (only {IMPUTED_COLUMN} may be empty)")
        record[name] = value
    return record


class Writer(Protocol):
    def write(self, chunk: Chunk, kept: Kept) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._out = csv.writer(self._fh)
        self._header = False

    def write(self, chunk: Chunk, kept: Kept) -> None:
        # An input that was scored before: its old answers are replaced, not repeated.
        columns = [c for c in chunk.columns if c not in OUTPUT_COLUMNS]
        outputs = [c for c in OUTPUT_COLUMNS if kept.bounds is not None or c not in RANGE_COLUMNS]
        if not self._header:
            self._out.writerow([*columns, *outputs])
            self._header = True
        for i, answer in kept.answers():
            row = chunk.rows[i]  # the cells as they were: a CSV passes through unchanged
            cells = ["" if row.get(c) is None else row[c] for c in columns]
            dollars = [f"{v:.2f}" if isinstance(v, float) else v for v in answer.values()]
            self._out.writerow([*cells, *dollars])

    def close(self) -> None:
        self._fh.close()


class ParquetWriter:
    def __init__(self, path: Path) -> None:
        self._pa = _pyarrow()
        self.path = path
        self._writer: Any = None
        self._schema: Any = None

    def write(self, chunk: Chunk, kept: Kept) -> None:
        # The model's inputs as the numbers they were read as (a CSV's cells are text).
        rows = [
            {**chunk.rows[i], **record, **answer}
            for (i, answer), record in zip(kept.answers(), kept.records, strict=True)
        ]
        if not rows:
            return
        pa = self._pa
        if self._writer is None:
            table = pa.Table.from_pylist(rows)
            self._schema = table.schema
            self._writer = pa.parquet.ParquetWriter(self.path, self._schema)
        else:  # every chunk in the first one's schema: one file, one schema
            table = pa.Table.from_pylist(rows, schema=self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def writer_for(path: Path) -> Writer:
    return ParquetWriter(path) if is_parquet(path) else CsvWriter(path)
