"""Where ``python -m training`` reports: for a person at a terminal, text lines and a progress
bar; anywhere else (a container's log, CI, a pipe), one JSON object per line and no bar.

The rule: ``--log-format`` (``auto``, ``text`` or ``json``), else ``HOUSING_LOG_FORMAT`` (``text``
or ``json``, as the server reads it), else ``auto``; ``auto`` is ``text`` when standard output is
a terminal and ``json`` otherwise. The progress bar is drawn on standard error, only in text and
only when standard error is a terminal (``--no-progress`` turns it off there too), so no ``\\r``
frame ever reaches a log file, whichever stream is redirected. JSON lines are the server's
(``app.observe.logs.JsonFormatter``: ``time``, ``level``, ``logger``, ``message``), with the
figures of the line as fields of their own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from app.observe.logs import JsonFormatter

FORMATS = ("auto", "text", "json")
ENV_FORMATS = ("text", "json")  # HOUSING_LOG_FORMAT's values, the server's too
LOGGER = "training"
Field = str | int | float | bool | None


def resolve_format(given: str | None, stream: TextIO) -> str:
    """``text`` or ``json`` from the flag, the environment or the stream (see the module)."""
    if given is None and (env := os.environ.get("HOUSING_LOG_FORMAT")):
        chosen = env.strip().lower()
        if chosen not in ENV_FORMATS:
            raise ValueError(
                f"HOUSING_LOG_FORMAT={env[:64]!r} is not one of {', '.join(ENV_FORMATS)}; "
                "unset it for text on a terminal and JSON elsewhere"
            )
        return chosen
    chosen = (given or "auto").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"--log-format {chosen[:64]!r} is not one of {', '.join(FORMATS)}")
    if chosen == "auto":
        return "text" if stream.isatty() else "json"
    return chosen


class Console:
    """Lines and the progress bar of one training run."""

    def __init__(
        self,
        fmt: str | None = None,
        stream: TextIO | None = None,
        progress: bool = True,
        bar_stream: TextIO | None = None,
    ):
        """``fmt`` as ``--log-format`` gives it: None (unset) lets ``HOUSING_LOG_FORMAT`` decide.
        Lines go to ``stream`` (standard output), the bar to ``bar_stream`` (standard error)."""
        self.stream = stream or sys.stdout
        self.bar_stream = bar_stream or sys.stderr
        self.format = resolve_format(fmt, self.stream)
        self._bar_on = progress and self.format == "text" and self.bar_stream.isatty()
        self._bar: object | None = None
        self._formatter = JsonFormatter()  # the server's JSON lines, field for field

    @property
    def json(self) -> bool:
        return self.format == "json"

    def line(self, message: str, level: str = "info", **fields: Field) -> None:
        """One line: ``message`` as text, or a JSON object with ``fields`` beside it."""
        if self.json:
            record = logging.makeLogRecord(
                {
                    "name": LOGGER,
                    "levelno": logging.getLevelName(level.upper()),
                    "levelname": level.upper(),
                    "msg": message,
                    **fields,
                }
            )
            self.stream.write(self._formatter.format(record) + "\n")
            self.stream.flush()
        elif self._bar is not None:
            from tqdm import tqdm

            tqdm.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def steps(self, items: Iterable[int], desc: str) -> Iterator[int]:
        """``items``, with a progress bar on stderr when one may be drawn."""
        if not self._bar_on:
            yield from items
            return
        from tqdm import tqdm

        bar = tqdm(items, desc=desc, unit="epoch", file=self.bar_stream)
        self._bar = bar
        try:
            yield from bar
        finally:
            bar.close()
            self._bar = None

    def status(self, **fields: str | int) -> None:
        """The bar's postfix (nothing when no bar is drawn)."""
        bar = self._bar
        if bar is not None:
            bar.set_postfix(**fields)  # type: ignore[attr-defined]
