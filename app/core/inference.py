"""The data plane: one inference path for every door (HTTP's routes and gRPC's calls).

A request goes decode -> submit -> wait -> finish, the same way whatever carried it:

1. Decode: the door's codec turns the request into encoded rows and a typed context
   (``Decoded``) inside ``with plane.arriving():``, so the batcher knows a request is on its
   way and may hold its next batch for it (``Batcher.arrivals``, up to
   ``HOUSING_MAX_DELAY_MS``); a large body is parsed on a worker thread instead
   (``offloaded``), so the loop serves others.
2. ``predict(model, rows, coverage, watch, trace)``: the rows are queued for ``model`` with the
   request deadline (``HOUSING_REQUEST_TIMEOUT_S``), more than ``HOUSING_MAX_INSTANCES`` of them
   one window at a time (each window queued once the last has run, so one large request never
   holds more of the queue than a JSON one may); their dollars, their price ranges at
   ``coverage`` (None: none) and their flags (``app.core.flags``) come back as a
   ``Prediction``. ``watch`` is the door's way to abandon the rows when its client goes
   (HTTP watches the socket; gRPC cancels the task, which abandons them the same way).

A request runs entirely on the model in service when it arrived (``serving()``), even if a
reload swaps in another meanwhile. Failures are domain exceptions (``app.errors``): NotReady
and ShuttingDown, Overloaded (the queue is full), DeadlineExceeded, the codec's InvalidInput or
ValidationError, a device error; each door maps them once (``app.http.refusals``,
``app.grpc.refusals``). Nothing here knows a transport.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from app.core.batching import Arrivals, Batcher, Ticket
from app.core.flags import Flag
from app.core.intervals import Coverage, Ranges
from app.core.runtime import ModelRuntime
from app.core.served import Served
from app.observe.tracing import RequestTrace

C = TypeVar("C")
# Given a queued ticket: a context manager that abandons it if the client goes meanwhile.
Watch = Callable[[Ticket], AbstractContextManager[None]]


# Plain slotted dataclasses, not frozen ones: a frozen dataclass's __init__ sets each field
# through object.__setattr__, and these are built for every request.
@dataclass(slots=True)
class Decoded(Generic[C]):
    """A checked request: its encoded rows, and what its door needs to answer in kind."""

    encoded: np.ndarray
    context: C


@dataclass(slots=True)
class Prediction:
    """The rows' dollars in order, their ranges (None: none asked, or the model has none) and
    their flags (already counted in the metrics)."""

    values: list[float]
    ranges: Ranges | None
    flags: list[Flag]


def dollars(values: list[float]) -> list[float]:
    """The values (already to the cent: ``app.core.runtime``), if every one is finite."""
    if not all(map(math.isfinite, values)):
        raise RuntimeError("the model produced a non-finite value")
    return values


def _unwatched(_: Ticket) -> AbstractContextManager[None]:
    return nullcontext()


class InferencePath:
    """The protocol-neutral path of a prediction request on ``runtime`` (see the module)."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.timeout_s = runtime.settings.request_timeout_s
        # The most rows a request holds in the queue at a time.
        self.window_rows = runtime.settings.max_instances

    def serving(self) -> Served:
        """The model that answers a request arriving now (NotReadyError when there is none)."""
        return self.runtime.serving()

    def arriving(self) -> Arrivals:
        """``with plane.arriving():`` around a request's parsing on the event loop: the
        batcher counts it as on its way; ShuttingDown when requests are no longer taken."""
        return self.runtime.accepting_batcher().arrivals

    async def offloaded(self, parse: Callable[[], Decoded[C]]) -> Decoded[C]:
        """``parse()`` of a large body on a worker thread, so that the loop serves other
        requests meanwhile; ShuttingDown when requests are no longer taken."""
        self.runtime.accepting_batcher()
        return await asyncio.to_thread(parse)

    async def predict(
        self,
        model: Served,
        rows: np.ndarray,
        coverage: Coverage | None,
        watch: Watch | None = None,
        trace: RequestTrace | None = None,
    ) -> Prediction:
        """Every row's dollars on ``model``, their ranges at ``coverage`` and their flags; no
        rows (a header-only CSV body) is an empty prediction, without a device call."""
        batcher = self.runtime.accepting_batcher()
        if not rows.shape[0]:
            return Prediction([], None if coverage is None else Ranges(coverage.coverage, []), [])
        watch = watch or _unwatched
        if rows.shape[0] > self.window_rows:
            values, ticket = await self._in_windows(batcher, model, rows, watch, trace)
        else:
            ticket = batcher.submit(rows, self.timeout_s, model)
            if trace is not None:
                trace.submitted(ticket, rows.shape[0])
            with watch(ticket):
                values = dollars(await ticket.result())
        if trace is not None:
            trace.ran(ticket)
        flags = model.flagger.flags(rows, np.asarray(values)) if ticket.flagged else []
        scales = ticket.scales
        ranges = None if coverage is None or scales is None else coverage.ranges(values, scales)
        return Prediction(values, ranges, flags)

    async def _in_windows(
        self,
        batcher: Batcher[Served],
        model: Served,
        rows: np.ndarray,
        watch: Watch,
        trace: RequestTrace | None,
    ) -> tuple[list[float], Ticket]:
        """Every row's dollars, ``window_rows`` at a time (see the module), and a ticket that
        stands for the windows' (their flags and scales, and the first device call for
        tracing)."""
        window = self.window_rows
        whole = Ticket()
        values: list[float] = []
        scales: list[float] | None = []
        for start in range(0, rows.shape[0], window):
            ticket = batcher.submit(rows[start : start + window], self.timeout_s, model)
            if trace is not None:
                if start == 0:
                    trace.submitted(ticket, rows.shape[0])
                    whole.trace = ticket.trace
                ticket.trace = whole.trace
            with watch(ticket):
                values += dollars(await ticket.result())
            whole.flagged = whole.flagged or ticket.flagged
            if scales is not None and ticket.scales is not None:
                scales += ticket.scales
            else:
                scales = None
            if whole.batch is None:
                whole.batch = ticket.batch
        whole.scales = scales
        return values, whole
