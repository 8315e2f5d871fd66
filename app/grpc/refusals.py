"""How refusals become gRPC statuses: one mapping for every call of every service.

The details are the refusal's text: the same message, with the same hint, as the HTTP door's
(``app.errors.refusal_text``; an INVALID's is the Open Inference Protocol's row-by-row text,
``app.codecs.oip_infer.invalid_text``), and for an unexpected error its error id (the request
id, on the log line with the stack trace). UNAVAILABLE, not RESOURCE_EXHAUSTED, for a full
queue: the code gRPC clients and retry policies treat as transient, as HTTP's 503 is.
"""

from __future__ import annotations

from app.codecs.oip_infer import invalid_text
from app.errors import Refusal, classify, log_error, refusal_text
from app.grpc.wire import RpcError, Status

CODES = {
    Refusal.INVALID: Status.INVALID_ARGUMENT,
    Refusal.UNAUTHENTICATED: Status.UNAUTHENTICATED,
    Refusal.FORBIDDEN: Status.PERMISSION_DENIED,
    Refusal.NOT_FOUND: Status.NOT_FOUND,
    Refusal.METHOD: Status.UNIMPLEMENTED,
    Refusal.NOT_ACCEPTABLE: Status.INVALID_ARGUMENT,
    Refusal.TOO_LARGE: Status.RESOURCE_EXHAUSTED,
    Refusal.MEDIA_TYPE: Status.INVALID_ARGUMENT,
    Refusal.NOT_READY: Status.UNAVAILABLE,
    Refusal.OVERLOADED: Status.UNAVAILABLE,
    Refusal.EXPIRED: Status.DEADLINE_EXCEEDED,
    Refusal.ERROR: Status.INTERNAL,
}


def rpc_error(exc: Exception, where: str, request_id: str, most: int) -> tuple[RpcError, Refusal]:
    """The call's status for ``exc``, and its kind (for the metrics); an ERROR is logged with
    its stack trace under ``request_id``, which its details carry as ``error_id``."""
    kind = classify(exc)
    details = invalid_text(exc, most) if kind is Refusal.INVALID else refusal_text(exc, kind)
    if kind is Refusal.ERROR:
        log_error(exc, where, request_id)
        details += f" (error_id {request_id})"
    return RpcError(CODES[kind], details, (("x-request-id", request_id),)), kind
