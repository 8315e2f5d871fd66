"""How refusals become gRPC statuses: one mapping for every call of every service.

The details are the refusal's text (``app.errors.refusal_text``): the same message, with the
same hint, as the HTTP door's, and for an unexpected error its error id (the request id, on
the log line with the stack trace).
"""

from __future__ import annotations

import grpc

from app.errors import Refusal

CODES = {
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Refusal.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Refusal.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Refusal.METHOD: grpc.StatusCode.UNIMPLEMENTED,
    Refusal.NOT_ACCEPTABLE: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    # UNAVAILABLE, not RESOURCE_EXHAUSTED, for a full queue: the code gRPC clients and retry
    # policies treat as transient, as HTTP's 503 is.
    Refusal.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    Refusal.OVERLOADED: grpc.StatusCode.UNAVAILABLE,
    Refusal.EXPIRED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Refusal.ERROR: grpc.StatusCode.INTERNAL,
}
