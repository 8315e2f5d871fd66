"""How refusals become HTTP answers: one mapping for FastAPI routes and the bare endpoints.

A ``Refusal`` kind (``app.errors.classify``) has one status and, where HTTP wants them, headers
(``WWW-Authenticate`` on a 401, ``Allow`` on a 405, ``Retry-After`` on a 503, ``Connection:
close`` on a 413 whose body is left unread). The body is the route family's: ``{"detail": ...}``
here (``/predict``, SageMaker, the probes), ``{"error": ...}`` for the Open Inference Protocol
(``app.http.oip``), including FastAPI's own 404 and 405 under ``/v2`` (``http_error``), so that
its clients show the reason: a 404 names the unknown model, or the path. Never a stack trace in
an answer: an unexpected error is logged with an error id -- the request id -- and the client
gets that id.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.codecs.oip import unknown_model
from app.errors import (
    MAX_ERROR_DETAILS,
    InvalidInput,
    Refusal,
    classify,
    log_error,
    refusal_text,
    validation_details,
)
from app.errors import invalid_details as domain_details
from app.identity import MODEL_NAME
from app.observe.logs import new_request_id

RETRY_AFTER = {"Retry-After": "1"}
STATUS = {
    Refusal.INVALID: 422,
    Refusal.UNAUTHENTICATED: 401,
    Refusal.FORBIDDEN: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.METHOD: 405,
    Refusal.NOT_ACCEPTABLE: 406,
    Refusal.TOO_LARGE: 413,
    Refusal.MEDIA_TYPE: 415,
    Refusal.NOT_READY: 503,
    Refusal.OVERLOADED: 503,
    Refusal.EXPIRED: 504,
    Refusal.ERROR: 500,
}
HEADERS: dict[Refusal, dict[str, str]] = {
    Refusal.UNAUTHENTICATED: {"WWW-Authenticate": "Bearer"},
    Refusal.METHOD: {"Allow": "POST"},
    # The rest of the body is never read: drop the connection.
    Refusal.TOO_LARGE: {"Connection": "close"},
    Refusal.NOT_READY: RETRY_AFTER,
    Refusal.OVERLOADED: RETRY_AFTER,
}


def invalid_details(exc: Exception, most: int) -> tuple[list[dict[str, str]], int]:
    """``app.errors.invalid_details``, and FastAPI's RequestValidationError too."""
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        return validation_details(errors[:most]), len(errors)
    assert isinstance(exc, InvalidInput | ValidationError)
    return domain_details(exc, most)


def error_answer(
    exc: Exception, where: str, request_id: str, most: int = MAX_ERROR_DETAILS
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) for any exception raised while answering ``where``.

    A 422 lists the first ``most`` errors and, when there are more, ``error_count``: how many
    were found (in lines 1 to ``checked_lines`` when the rest of the body was not checked). A
    500's ``error_id`` is the request id: the client, the ``X-Request-ID`` header and the log
    line with the stack trace all carry the same value.
    """
    kind = Refusal.INVALID if isinstance(exc, RequestValidationError) else classify(exc)
    listed = isinstance(exc, RequestValidationError | ValidationError | InvalidInput)
    status, headers = STATUS[kind], HEADERS.get(kind, {})
    if listed:
        details, total = invalid_details(exc, most)
        body: dict[str, Any] = {"detail": details}
        if total > len(details):
            body["error_count"] = total
            if isinstance(exc, InvalidInput) and exc.checked is not None:
                body["checked_lines"] = exc.checked
        return status, body, headers
    if kind is Refusal.ERROR:
        log_error(exc, where, request_id)
        return status, {"detail": "internal error", "error_id": request_id}, headers
    return status, {"detail": refusal_text(exc, kind)}, headers


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
    status, body, headers = error_answer(exc, f"{request.method} {request.url.path}", request_id)
    return JSONResponse(body, status_code=status, headers=headers)


OIP_PREFIX = "/v2"
_MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/|$)")
# The most of a path a 404 repeats.
PATH_CHARS = 200


def oip_path(path: str) -> bool:
    """Whether ``path`` is the Open Inference Protocol's (its errors are ``{"error": ...}``)."""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def not_found_text(method: str, path: str) -> str:
    """The 404 of a path under ``/v2`` that no route has: the model, when the path names
    another (the gRPC door's text), else the path (its first ``PATH_CHARS`` characters)."""
    named = _MODEL_PATH.match(path)
    if named is not None and named[1] != MODEL_NAME:
        return unknown_model(named[1])
    shown = path if len(path) <= PATH_CHARS else path[:PATH_CHARS] + "..."
    return f"no route for {method} {shown}; this server's routes are listed at /docs"


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's HTTP errors (an unknown path's 404, a wrong method's 405): the protocol's
    ``{"error": ...}`` under ``/v2``, FastAPI's ``{"detail": ...}`` elsewhere."""
    assert isinstance(exc, HTTPException)
    path = request.scope["path"]
    if not oip_path(path):
        return await http_exception_handler(request, exc)
    text = not_found_text(request.method, path) if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": text}, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """For the FastAPI routes (probes, docs); the bare endpoints call ``error_answer`` directly.

    RequestValidationError replaces FastAPI's own 422 format; HTTP errors under ``/v2`` are the
    protocol's (``http_error``); everything else unexpected is a 500 with an error id.
    """
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, _handle)
