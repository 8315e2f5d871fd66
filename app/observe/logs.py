"""Logging: one JSON object per line (``HOUSING_LOG_FORMAT=json``), or plain text for people.

uvicorn's own loggers go through the same handler, so a log collector sees one format. Fields
given with ``extra=`` (request_id, route, status, duration_ms ...) become top-level keys.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured duplicate of the message
}
REQUEST_ID_HEADER = "x-request-id"
# A caller's id is echoed into logs and headers: only short, plain ids are taken as they are.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class _NewIds:
    """New request ids: 32 hex digits, 64 random bits drawn once per process, then a counter.

    As unique as uuid4 for this purpose (two processes share a prefix with odds of 2^-64),
    without a random draw, a system call and an object per request.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child draws its own

    def _reset(self) -> None:
        self._prefix = ""
        self._count = itertools.count()

    def __call__(self) -> str:
        if not self._prefix:
            self._prefix = os.urandom(8).hex()
        return f"{self._prefix}{next(self._count):016x}"


new_request_id = _NewIds()


def request_id_from(value: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is a plain token, else a new id."""
    if value is not None and _SAFE_ID.fullmatch(value):
        return value
    return new_request_id()


def request_id_of(headers: Mapping[bytes, bytes]) -> str:
    """``request_id_from`` the ``x-request-id`` of HTTP headers or gRPC metadata (lower-case
    bytes keys, as the ASGI scope and the gRPC transport give them)."""
    given = headers.get(b"x-request-id")
    return request_id_from(None if given is None else given.decode("latin-1"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Logs may carry the trace (operators need it); responses never do.
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn (its ``log_config``)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's loggers propagate to the root handler: one format for everything.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
