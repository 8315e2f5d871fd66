"""Bodies of one record per line, as SageMaker Batch Transform's ``SplitType=Line`` sends them.

``text/csv`` (``parse_csv``): columns are the raw features in the data set's order
(``RAW_COLUMNS``: eight numbers, then ``ocean_proximity``); a header line with exactly those
names may come first, and may be all there is (no records: ``parse_csv``); an empty
``total_bedrooms`` is missing (imputed). Cells become numbers
here. JSON Lines (``parse_jsonlines``): each line is one JSON object, a record as ``/predict``
takes it. Either way blank lines are skipped (a line of empty cells, ``,,,,,,,,``, is a
record, refused for its missing fields: an answer never has fewer lines than its body's
records, which would misalign a transform job's output), and bounds and categories are then
checked by the same validator as ``/predict``, so the rules live in one place; an error names
the line (1-based, as in the file) and the field. A leading UTF-8 BOM (spreadsheets write one)
is skipped. Numbers are plain ASCII (``app.codecs.numbers``).

A refusal lists the body's first errors by line (``HOUSING_MAX_ERROR_DETAILS``) and counts
them. Rows are checked as they are read (``Rows``), and reading stops once the answer is a 422
whose list is full: the count then covers the lines up to there, and the answer says which
(``checked_lines``). Nothing of a refused body is kept but the list and the count, so a body
of bad lines costs no more than a valid body of its size, and its answer stays a few KB. A
body that is not CSV at all (not UTF-8, a quote never closed) is refused where that is found.

A large body is parsed on a worker thread (``app.http.sagemaker``), where a single C call holds
the GIL for as long as it runs: over 100,000 rows, ``list(csv.reader(...))`` or one call of the
validator took a quarter of a second each, and every other request waited. So rows are read
one by one and validated ``SLICE_ROWS`` at a time, and the thread gives way between them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from app.codecs.numbers import strict_float
from app.codecs.schemas import RequestAdapter
from app.errors import MAX_ERROR_DETAILS, InvalidInput, validation_details
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, RAW_COLUMNS

_INSTANCE = re.compile(r"^instances\.(\d+)")
# Rows checked in one call of the validator: a few milliseconds of work (see the docstring).
SLICE_ROWS = 2048
BOM = "\ufeff"
# Cells are stripped of ASCII blanks only: Unicode spaces are not part of a CSV number.
BLANKS = " \t\r"

Detail = dict[str, str]


class Rows:
    """A body's rows as they are read: validated ``SLICE_ROWS`` at a time, with its errors.

    ``add`` takes a row, ``refuse`` a line that is not a row; both return True once the answer
    is a 422 whose list is full (``most`` errors listed), when the caller stops reading: the
    count then covers lines 1 to ``checked``. ``result`` validates what is pending and returns
    the records, or raises InvalidInput with the first ``most`` errors by line and the count.
    Once a row is refused no record is kept, only counts.
    """

    def __init__(self, adapter: RequestAdapter, most: int) -> None:
        self.adapter = adapter
        self.most = most
        self.records: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.lines: list[int] = []  # the pending rows' lines
        self.found: list[tuple[int, Detail]] = []
        self.total = 0
        self.checked: int | None = None

    def add(self, line: int, record: dict[str, Any]) -> bool:
        self.pending.append(record)
        self.lines.append(line)
        if len(self.pending) < SLICE_ROWS:
            return False
        self._validate()
        return self._full(line)

    def refuse(self, line: int, field: str, message: str, kind: str = "csv") -> bool:
        self.total += 1
        if len(self.found) < self.most:
            self.found.append((line, _detail(line, field, message, kind)))
        return self._full(line)

    def _full(self, line: int) -> bool:
        if len(self.found) < self.most:
            return False
        self._validate()  # rows before this line come first in the list
        self.checked = line
        return True

    def _validate(self) -> None:
        if not self.pending:
            return
        try:
            self.adapter.validate_python({"instances": self.pending})
        except ValidationError as exc:
            self.total += exc.error_count()
            # These rows' lines may come before parse errors already listed: take up to
            # ``most`` of them, then keep the first ``most`` of all by line.
            for d in validation_details(exc.errors(include_url=False)[: self.most]):
                where = _INSTANCE.match(d["field"])  # instances.4.latitude -> line 6.latitude
                line = self.lines[int(where[1])] if where is not None else 0
                if where is not None:
                    d["field"] = f"line {line}{d['field'][where.end() :]}"
                self.found.append((line, d))
            self.found.sort(key=lambda found: found[0])
            del self.found[self.most :]
        if not self.total:
            self.records += self.pending
        else:
            self.records = []  # a 422: no record is needed any more
        self.pending, self.lines = [], []

    def result(self, ended: bool) -> list[dict[str, Any]]:
        """The validated records, or InvalidInput; ``ended``: whether the whole body was read."""
        self._validate()
        if self.total:
            checked = None if ended else self.checked
            raise InvalidInput([d for _, d in self.found], self.total, checked)
        return self.records


def _detail(line: int, field: str, message: str, kind: str = "csv") -> Detail:
    return {"field": f"line {line}.{field}", "message": message, "type": kind}


def _problem(line: int, field: str, message: str) -> InvalidInput:
    return InvalidInput([_detail(line, field, message)])


def parse_csv(
    body: bytes, adapter: RequestAdapter, most: int = MAX_ERROR_DETAILS
) -> list[dict[str, Any]]:
    """Validated records, or InvalidInput naming each bad line (1-based, as in the file) and
    field: the first ``most``, and the count. A leading UTF-8 BOM is skipped; a body that is
    not CSV at all (bad UTF-8, a broken quote) is refused at the first such place.

    The header line alone is no records (an empty list): a CSV object in S3 that has its
    header and no rows is a valid, empty file, and Batch Transform sends it as it is. A body
    with no line at all (empty, or blank lines) is refused: it says nothing of its format."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(1, "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix(BOM)
    out = Rows(adapter, most)
    rows = csv.reader(io.StringIO(text), strict=True)  # row by row: see the module docstring
    first = True
    seen = stopped = False
    try:
        for row in rows:
            line = rows.line_num  # the row's last physical line: a quoted cell may span lines
            if not row or (len(row) == 1 and not row[0].strip(BLANKS)):
                continue  # a blank line; a row of empty cells is a record (refused), never dropped
            if first and tuple(c.strip(BLANKS) for c in row) == RAW_COLUMNS:
                first = False
                continue  # the header
            first = False
            seen = True
            if _record(line, row, out):
                stopped = True
                break
    except csv.Error as exc:
        raise _problem(rows.line_num, "body", f"not CSV: {exc}") from None
    if not seen and not first:
        return []  # the header alone
    if not seen:
        raise _problem(1, "body", f"no rows; expected lines of {','.join(RAW_COLUMNS)}")
    return out.result(ended=not stopped)


def parse_jsonlines(
    body: bytes, adapter: RequestAdapter, most: int = MAX_ERROR_DETAILS
) -> list[dict[str, Any]]:
    """Validated records, one JSON object a line, or InvalidInput naming each bad line and
    field (the first ``most``, and the count). A leading UTF-8 BOM is skipped."""
    out = Rows(adapter, most)
    seen = stopped = False
    for line, text in enumerate(body.removeprefix(BOM.encode()).split(b"\n"), start=1):
        if not text.strip():
            continue
        seen = True
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            full = out.refuse(line, "row", f"not JSON: {exc}", "jsonlines")
        else:
            if isinstance(record, dict):
                full = out.add(line, record)
            else:
                kind = f"a JSON object is expected, not {type(record).__name__}"
                full = out.refuse(line, "row", kind, "jsonlines")
        if full:
            stopped = True
            break
    if not seen:
        raise _problem(1, "body", "no rows; expected one JSON object a line")
    return out.result(ended=not stopped)


def _record(line: int, row: Sequence[str], out: Rows) -> bool:
    """The row to ``out`` as a record, or its first problem; True once ``out`` is full."""
    if len(row) != len(RAW_COLUMNS):
        expected = f"expected {len(RAW_COLUMNS)}: {','.join(RAW_COLUMNS)}"
        return out.refuse(line, "row", f"{len(row)} columns, {expected}")
    record: dict[str, Any] = {}
    for name, cell in zip(RAW_COLUMNS, row, strict=True):
        try:
            record[name] = cell_value(name, cell)
        except ValueError as exc:
            return out.refuse(line, name, str(exc))
    return out.add(line, record)


def cell_value(name: str, cell: str) -> float | str | None:
    """One CSV cell as the validator takes it (also ``python -m app.score``'s): the category as
    text, numbers parsed, an empty ``total_bedrooms`` missing; ValueError with the reason."""
    cell = cell.strip(BLANKS)
    if name == CATEGORICAL_COLUMN:
        return cell
    if cell == "":
        if name == IMPUTED_COLUMN:
            return None
        raise ValueError(f"missing (only {IMPUTED_COLUMN} may be empty)")
    return strict_float(cell)
