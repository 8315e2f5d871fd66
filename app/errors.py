"""How failures become HTTP answers: one mapping for FastAPI routes and the raw endpoints.

Never a stack trace in a response: an unexpected error is logged with an error id, and the
client gets that id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.batching import DeadlineExceeded, Overloaded, ShuttingDown

logger = logging.getLogger("housing.errors")

# Discriminator tags of the request union; they are not part of the client's field path.
_UNION_TAGS = {"record", "batch"}
RETRY_AFTER = {"Retry-After": "1"}


class StartupError(Exception):
    """The service cannot start; the message says what is wrong and how to fix it."""


class NotReadyError(Exception):
    """The model is not loaded (yet, or any more): 503 so a load balancer retries elsewhere."""


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


def field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p not in _UNION_TAGS and p != "body"]
    return ".".join(parts) or "body"


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors -> ``[{"field", "message", "type"}]``; the input is never echoed back."""
    return [{"field": field_path(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errors]


def error_answer(exc: Exception, where: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for any exception raised while answering ``where``."""
    if isinstance(exc, ValidationError | RequestValidationError):
        return 422, {"detail": validation_details(exc.errors())}, {}
    if isinstance(exc, NotReadyError | ShuttingDown):
        return 503, {"detail": str(exc)}, RETRY_AFTER
    if isinstance(exc, Overloaded):
        return 503, {"detail": f"overloaded, retry later: {exc}"}, RETRY_AFTER
    if isinstance(exc, DeadlineExceeded):
        return 504, {"detail": f"deadline exceeded: {exc}"}, {}
    error_id = uuid.uuid4().hex
    logger.error("error %s on %s", error_id, where, exc_info=exc)
    return 500, {"detail": "internal error", "error_id": error_id}, {}


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    status, body, headers = error_answer(exc, f"{request.method} {request.url.path}")
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """For the FastAPI routes (probes, docs); the bare endpoints call ``error_answer`` directly.

    RequestValidationError replaces FastAPI's own 422 format; everything else unexpected is a
    500 with an error id.
    """
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(Exception, _handle)
