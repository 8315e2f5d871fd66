"""A call's message, read and decoded by the service itself; how a call ended, named.

Left to ``grpc.aio``, a method's ``request_deserializer`` decodes the message before the
service sees the call: bytes that are not that message fail there, as UNKNOWN ("Unexpected
<class DecodeError>") with an ERROR traceback in the log for every call, before the API key is
checked -- anyone could fill the log (issue 26, finding 6). And a call that ends while its
message is still arriving never reaches the service, so it was not counted. Hence:

* The services register no deserializer. ``GRPCInferenceService``'s methods are registered as
  client-streaming (``grpc.stream_unary_rpc_method_handler``): the service is called as soon
  as the call's metadata is in and reads the one message itself (``read_message``). On the
  wire a unary call and a one-message client stream are the same, so every unary client is
  served as before. ``ModelInfer`` checks the API key before it receives a byte of the
  message; a call cancelled by its client or past its deadline while its message arrives is
  counted as any other (CANCELLED, DEADLINE_EXCEEDED: ``ended``).
* Bytes that do not parse as the method's message are refused with ``RequestRefused(400)``:
  INVALID_ARGUMENT, with the message type and a hint in the details, counted as a refused
  call. Each one is also told to a ``Throttled`` warning, which writes one WARNING line at
  most every ``WARN_EVERY_S`` seconds (60) for all calls and clients of the process, saying
  how many more came since its previous line -- never a traceback.
* A call that carries no message at all is INVALID_ARGUMENT too (the protocol's unary
  methods have exactly one) -- unless that answer cannot be sent: gRPC reports a call that
  ended while its message was arriving as one without a message first, so the answer is
  what tells them apart (``_no_message``).

A message that parses may still be wrong; that is the service's business (``app.grpc.tensors``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from app.errors import Refusal, RequestRefused

logger = logging.getLogger("housing.grpc")

WARN_EVERY_S = 60.0
# A client whose deadline passes cancels the call itself, a moment before the server's own
# copy of that deadline (computed on arrival) passes: a call cancelled this close to its
# deadline is counted as DEADLINE_EXCEEDED, not CANCELLED.
DEADLINE_SLACK_S = 0.1
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
    """``raw`` as a ``given`` message; RequestRefused (400) with a hint when it is not one."""
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


async def read_raw(context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """The call's one message, as bytes (see the module): AbortError once INVALID_ARGUMENT is
    sent for a call that has no message; CancelledError when the call ended while its message
    was arriving."""
    raw = await context.read()
    if raw is grpc.aio.EOF:
        await _no_message(context)
    assert isinstance(raw, bytes)
    return raw


async def _no_message(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """Answer a call that has no message, or find that it has ended.

    gRPC reports a call cancelled (by its client, or its deadline) while its message was
    arriving first as a call without a message, and only then cancels the handler -- a loop
    pass or more later. Sending the answer tells the two apart: a call that has ended cannot
    take it, and is then counted as what it is (``ended``), not as a client's mistake.
    """
    try:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the call carried no message. Hint: send exactly one, as a unary call does.",
        )
    except grpc.aio.InternalError:  # the status could not be sent: nobody is listening
        raise asyncio.CancelledError from None


def ended(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The code of a call that gRPC cancelled: DEADLINE_EXCEEDED when its deadline was (about
    to be) over, else CANCELLED (its client went away)."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= DEADLINE_SLACK_S
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
