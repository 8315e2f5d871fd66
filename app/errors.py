"""How failures become HTTP answers: one mapping for FastAPI routes and the raw endpoints.

Never a stack trace in a response: an unexpected error is logged with an error id, and the
client gets that id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.batching import DeadlineExceeded, Overloaded, ShuttingDown
from app.observe.logs import new_request_id

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


class RequestRefused(Exception):
    """A request refused before any model work: the status, a message with a hint, headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class InvalidInput(Exception):
    """A body that parsed but is wrong: 422 with ``[{"field", "message", "type"}]``."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


def field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p not in _UNION_TAGS and p != "body"]
    return ".".join(parts) or "body"


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors -> ``[{"field", "message", "type"}]``; the input is never echoed back."""
    return [{"field": field_path(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errors]


_REASONS = {
    401: "unauthorized",
    405: "method",
    406: "not_acceptable",
    413: "too_large",
    415: "media_type",
}


def refusal_reason(exc: Exception, status: int) -> str:
    """The ``reason`` label of ``housing_rejected_requests`` for a failed request."""
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, DeadlineExceeded):
        return "expired"
    if isinstance(exc, NotReadyError | ShuttingDown):
        return "not_ready"
    if status in _REASONS:
        return _REASONS[status]
    return "invalid" if status < 500 else "error"


def error_answer(
    exc: Exception, where: str, request_id: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for any exception raised while answering ``where``.

    A 500's ``error_id`` is the request id: the client, the ``X-Request-ID`` header and the
    log line with the stack trace all carry the same value.
    """
    if isinstance(exc, RequestRefused):
        return exc.status, {"detail": str(exc)}, exc.headers
    if isinstance(exc, ValidationError | RequestValidationError):
        return 422, {"detail": validation_details(exc.errors())}, {}
    if isinstance(exc, InvalidInput):
        return 422, {"detail": exc.details}, {}
    if isinstance(exc, NotReadyError | ShuttingDown):
        return 503, {"detail": str(exc)}, RETRY_AFTER
    if isinstance(exc, Overloaded):
        return 503, {"detail": f"overloaded, retry later: {exc}"}, RETRY_AFTER
    if isinstance(exc, DeadlineExceeded):
        return 504, {"detail": f"deadline exceeded: {exc}"}, {}
    logger.error(
        "error %s on %s", request_id, where, exc_info=exc, extra={"request_id": request_id}
    )
    return 500, {"detail": "internal error", "error_id": request_id}, {}


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
    status, body, headers = error_answer(exc, f"{request.method} {request.url.path}", request_id)
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """For the FastAPI routes (probes, docs); the bare endpoints call ``error_answer`` directly.

    RequestValidationError replaces FastAPI's own 422 format; everything else unexpected is a
    500 with an error id.
    """
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(Exception, _handle)
