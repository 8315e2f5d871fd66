"""The service's failures as domain values, the same for every door.

A request is refused with one of the ``Refusal`` kinds (``classify``); each transport maps a
kind to its own answer once: ``app.http.refusals`` (HTTP status and the route's body shape),
``app.grpc.refusals`` (gRPC status code and details). The kind's value is the ``reason`` label
of ``housing_rejected_requests_total``. Nothing here imports the app above it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from modelspec.features import BEDROOMS_ABOVE_ROOMS, IMPUTED_COLUMN

logger = logging.getLogger("housing.errors")

# Discriminator tags of the request union; they are not part of the client's field path.
_UNION_TAGS = {"record", "batch"}


class Refusal(enum.Enum):
    """Why a request was not answered with a prediction (the value: the metrics' reason)."""

    INVALID = "invalid"  # a body, tensor, parameter or record the protocol or rules refuse
    UNAUTHENTICATED = "unauthorized"  # a missing or wrong key
    FORBIDDEN = "forbidden"  # a control route the operator has not opened
    NOT_FOUND = "not_found"  # a model or version this server does not serve
    METHOD = "method"  # a method the route does not take
    NOT_ACCEPTABLE = "not_acceptable"  # no answer format the client accepts
    TOO_LARGE = "too_large"  # a body over HOUSING_MAX_BODY_BYTES
    MEDIA_TYPE = "media_type"  # a content type the route does not read
    NOT_READY = "not_ready"  # starting, failing or stopping: retry elsewhere
    OVERLOADED = "overloaded"  # the queue is full: retry later
    EXPIRED = "expired"  # the request's deadline passed before its rows ran
    ERROR = "error"  # anything else: a bug or a device failure, logged with an error id


class Overloaded(Exception):
    """The queue is full: refuse now rather than queue without bound."""


class ShuttingDown(Exception):
    """The batcher stopped before these rows ran."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its rows ran."""


class StartupError(Exception):
    """The service cannot start; the message says what is wrong and how to fix it."""


class NotReadyError(Exception):
    """The model is not loaded (yet, or any more): 503 so a load balancer retries elsewhere."""


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


class RequestRefused(Exception):
    """A request refused before any model work: its kind, and a message with a hint."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind


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


def invalid_details(
    exc: InvalidInput | ValidationError, most: int
) -> tuple[list[dict[str, str]], int]:
    """The first ``most`` errors of an InvalidInput or a pydantic ValidationError, and how
    many were found (pydantic's own are built only for those listed)."""
    if isinstance(exc, InvalidInput):
        return exc.details[:most], exc.total
    errors = exc.errors(include_url=False)
    return validation_details(errors[:most]), exc.error_count()


# Characters of a client's value a message quotes: a refusal never grows with the input.
ECHO_CHARS = 64


def shown(value: object) -> str:
    """A client's value for a message: its repr, whole when short, else its start and length
    (``'aaaa...' (10000 characters)``)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= ECHO_CHARS:
        return repr(value)
    return f"{text[:ECHO_CHARS]!r}... ({len(text)} characters)"


def log_error(exc: BaseException, where: str, request_id: str) -> None:
    """The log line of an unexpected error (a Refusal.ERROR), with its stack trace, under the
    request id its answer gives the client as ``error_id`` (both doors)."""
    logger.error(
        "error %s on %s", request_id, where, exc_info=exc, extra={"request_id": request_id}
    )


def classify(exc: BaseException) -> Refusal:
    """The kind of refusal of any exception raised while answering a request."""
    if isinstance(exc, RequestRefused):
        return exc.kind
    if isinstance(exc, ValidationError | InvalidInput):
        return Refusal.INVALID
    if isinstance(exc, Overloaded):
        return Refusal.OVERLOADED
    if isinstance(exc, DeadlineExceeded):
        return Refusal.EXPIRED
    if isinstance(exc, NotReadyError | ShuttingDown):
        return Refusal.NOT_READY
    return Refusal.ERROR


def refusal_text(exc: BaseException, kind: Refusal) -> str:
    """The message of a refusal for a door that answers in text (gRPC details, the Open
    Inference Protocol's ``error``); an ERROR's is fixed (its cause is in the log)."""
    if kind is Refusal.OVERLOADED:
        return f"overloaded, retry later: {exc}"
    if kind is Refusal.EXPIRED:
        return f"deadline exceeded: {exc}"
    if kind is Refusal.ERROR:
        return "internal error"
    return str(exc)
