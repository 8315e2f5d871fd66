"""Errors the service turns into clean HTTP answers: never a stack trace in a response."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

logger = logging.getLogger("housing.errors")

# Discriminator tags of the request union; they are not part of the client's field path.
_UNION_TAGS = {"record", "batch"}


class StartupError(Exception):
    """The service cannot start; the message says what is wrong and how to fix it."""


class NotReadyError(Exception):
    """The model is not loaded (yet, or any more): 503 so a load balancer retries elsewhere."""


def field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p not in _UNION_TAGS and p != "body"]
    return ".".join(parts) or "body"


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors -> ``[{"field", "message", "type"}]``; the input is never echoed back."""
    return [{"field": field_path(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errors]


def _unprocessable(errors: Sequence[Any]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": validation_details(errors)})


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError | RequestValidationError)
    return _unprocessable(exc.errors())


async def _on_not_ready(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex
    logger.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal error", "error_id": error_id})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(NotReadyError, _on_not_ready)
    app.add_exception_handler(Exception, _on_unexpected)
