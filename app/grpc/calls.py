"""Undecodable messages, refused without a traceback and logged at most once a minute.

A method's message is decoded by the service itself (``decode``), never by the transport:
bytes that do not parse as the method's message are refused with ``RequestRefused(INVALID)``
-- INVALID_ARGUMENT, with the message type and a hint in the details, counted as a refused
call -- and told to a ``Throttled`` warning, which writes one WARNING line at most every
``WARN_EVERY_S`` seconds (60) for all calls and clients of the process, saying how many more
came since its previous line. A message that parses may still be wrong; that is the service's
business (``app.grpc.tensors``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from app.errors import Refusal, RequestRefused

logger = logging.getLogger("housing.grpc")

WARN_EVERY_S = 60.0
M = TypeVar("M", bound=Message)


class Throttled:
    """``warn(text)`` logs ``text`` at most once per ``every_s``; the ones in between are
    counted, and the next line that is written says how many there were."""

    def __init__(
        self, every_s: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def warn(self, text: str) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            self.suppressed += 1
            return
        if self.suppressed:
            text += f" ({self.suppressed} more since the previous such line)"
        self._last, self.suppressed = now, 0
        logger.warning(text)


def decode(raw: bytes, given: type[M], throttled: Throttled) -> M:
    """``raw`` as a ``given`` message; RequestRefused (INVALID) with a hint when it is not one."""
    try:
        return given.FromString(raw)
    except DecodeError:
        name = given.DESCRIPTOR.full_name
        throttled.warn(
            f"gRPC: refused {len(raw)} bytes that are not a message of type {name} "
            "(INVALID_ARGUMENT)"
        )
        raise RequestRefused(
            Refusal.INVALID,
            f"the call's {len(raw)} bytes are not a message of type {name} (protobuf cannot parse "
            "them). Hint: serialize the message built from the Open Inference Protocol's "
            "open_inference_grpc.proto (app/grpc/ has it), with gRPC's own framing.",
        ) from None
