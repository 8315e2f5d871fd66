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
from modelspec.features import BEDROOMS_ABOVE_ROOMS, IMPUTED_COLUMN

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


# Most errors an answer lists (``HOUSING_MAX_ERROR_DETAILS``' default): a hostile body of a
# million bad lines gets the first few and the count, not a million entries.
MAX_ERROR_DETAILS = 20


class InvalidInput(Exception):
    """A body that parsed but is wrong: 422 with ``[{"field", "message", "type"}]``, the first
    errors in the body's order, and ``total``, how many it has in all (at least as many as
    listed). Whoever builds one keeps ``details`` short (``MAX_ERROR_DETAILS``)."""

    def __init__(
        self, details: list[dict[str, str]], total: int = 0, checked: int | None = None
    ) -> None:
        self.details = details
        self.total = max(total, len(details))
        # The last line checked, when the body was checked only so far (its rest unread).
        self.checked = checked
        super().__init__(summary(details, self.total, checked))


def summary(details: Sequence[dict[str, str]], total: int, checked: int | None = None) -> str:
    """One line: each listed error, and how many more were found."""
    text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    more = total - len(details)
    if more <= 0:
        return text
    where = "" if checked is None else f" in lines 1-{checked} (the rest were not checked)"
    return f"{text}; and {more} more error{'s' * (more > 1)}{where}"


def field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p not in _UNION_TAGS and p != "body"]
    return ".".join(parts) or "body"


# Errors of a rule across a record's fields are raised on the record; this names the field.
_FIELD_OF_RULE = {BEDROOMS_ABOVE_ROOMS: IMPUTED_COLUMN}


def _where(error: Any) -> str:
    path = field_path(error["loc"])
    field = _FIELD_OF_RULE.get(error["type"])
    if field is None:
        return path
    return field if path == "body" else f"{path}.{field}"


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors -> ``[{"field", "message", "type"}]``; the input is never echoed back."""
    return [{"field": _where(e), "message": e["msg"], "type": e["type"]} for e in errors]


def invalid_details(exc: Exception, most: int) -> tuple[list[dict[str, str]], int]:
    """The first ``most`` errors of an InvalidInput or a pydantic ValidationError, and how
    many were found (pydantic's own are built only for those listed)."""
    if isinstance(exc, InvalidInput):
        return exc.details[:most], exc.total
    assert isinstance(exc, ValidationError | RequestValidationError)
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    total = exc.error_count() if isinstance(exc, ValidationError) else len(errors)
    return validation_details(errors[:most]), total


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
    exc: Exception, where: str, request_id: str, most: int = MAX_ERROR_DETAILS
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for any exception raised while answering ``where``.

    A 422 lists the first ``most`` errors and, when there are more, ``error_count``: how many
    were found (in lines 1 to ``checked_lines`` when the rest of the body was not checked). A
    500's ``error_id`` is the request id: the client, the ``X-Request-ID`` header and the log
    line with the stack trace all carry the same value.
    """
    if isinstance(exc, RequestRefused):
        return exc.status, {"detail": str(exc)}, exc.headers
    if isinstance(exc, ValidationError | RequestValidationError | InvalidInput):
        details, total = invalid_details(exc, most)
        body: dict[str, Any] = {"detail": details}
        if total > len(details):
            body["error_count"] = total
            if isinstance(exc, InvalidInput) and exc.checked is not None:
                body["checked_lines"] = exc.checked
        return 422, body, {}
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
