"""Adaptive batching: rows of concurrent requests share device calls.

Requests put their rows in a bounded queue with a future; one consumer task takes a batch and
runs one device call for it -- on the device thread when given an executor (the event loop
never blocks on the device), else inline -- then hands each future its rows' results, as a
list of Python floats (one conversion per batch, not one per request). A device call that
returns ``(n, 2)`` gives values and scales (``modelspec.intervals``): the values go to the
futures, and each ticket's ``scales`` gets its rows' scales. A batch is taken when

* it is full (``max_batch_size`` rows), or
* its oldest rows have waited ``max_delay``, or
* no request is on its way: every request that has started is already queued, so waiting
  could only add latency. A lone request therefore never waits for the timer, and under load
  batches fill up by themselves while the device works on the previous one.

Under load -- the previous batch combined requests -- a batch that is not full is taken two
event-loop passes later: in the first the loop reads the sockets that have data, in the
second the requests read there are parsed and queued, and join the batch. Without them,
requests answered together come back together, and at c64 about three groups of ~21 kept
taking turns at the device; with them the groups merge into full batches (with one pass, not
always), and in the server a cpu call of ~63 rows took 1.4-1.7x the time of one of ~24.

A request larger than ``max_batch_size`` is split into parts that are reassembled in order.
``max_batch_size == 1`` turns batching off: requests are never combined (each still runs in
chunks of at most ``max_chunk`` rows, the largest compiled batch size).

Failures are explicit: a full queue raises ``Overloaded`` at once (503), a device error is set
on every future of the batch, a result with the wrong row count fails the whole batch, and rows
whose caller has gone (deadline passed, client disconnected: the future is cancelled) are
dropped before the device call.

Every request is queued for a model (``submit``'s ``model``, passed to the device call and the
screen as it is): a batch holds the rows of one model only, so when the runtime swaps models
(``ModelRuntime.reload``), rows queued for the old one still run on it, in order, and the new
model's start with the next batch. A request split into parts is queued for one model, all of
its parts.

Work that can be done once per batch is: given a ``screen``, each batch's rows and results are
screened in one call, which returns the rows worth a closer look; the ticket of a request that
holds one of them has ``flagged`` set, and the others cost nothing more (``app.core.flags``).
Deadlines share one timer per length (``app.core.timeouts``), not a timer per request. Given a
``tracer``, each device call that holds a traced request (``Ticket.trace``) is reported to it
with its wall-clock start and end (``app.observe.tracing``); untraced calls cost a test.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, Protocol, TypeVar

import numpy as np

from app.core.timeouts import Timeouts
from app.errors import DeadlineExceeded, Overloaded, ShuttingDown

M = TypeVar("M")  # what a request is queued for: a model (None where there is only one)
# (a batch's rows, the model its requests were queued for) -> its results.
DeviceCall = Callable[[np.ndarray, M | None], np.ndarray]
# (a batch's rows, their results, its model) -> indices of the rows worth a closer look.
Screen = Callable[[np.ndarray, np.ndarray, M | None], list[int]]
# (its requests' tickets, its rows, start and end in ns since the epoch, its model, the error
# it raised or None): told of every device call that holds a traced request (app.observe.tracing).
BatchTracer = Callable[[list["Ticket"], int, int, int, M | None, BaseException | None], None]


class BatchObserver(Protocol):
    """Told of every device call (``app.core.runtime.ModelRuntime`` is the one in service)."""

    def observe_batch(
        self, rows: int, device_seconds: float, waits: list[float], queued_rows: int
    ) -> None: ...

    def observe_dropped(self, rows: int) -> None: ...

    def observe_failure(self, exc: Exception) -> None: ...


class Arrivals:
    """Requests that have started but are not queued yet (reading or parsing their bodies).

    ``with batcher.arrivals:`` around that work. While any request is arriving, the consumer
    may wait (up to ``max_delay``) for its rows; each one leaving wakes the consumer to look
    again. One shared object, no allocation per request: this is on every request's path.
    """

    __slots__ = ("_wakeup", "count")

    def __init__(self, wakeup: asyncio.Event) -> None:
        self.count = 0
        self._wakeup = wakeup

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        self._wakeup.set()


class Ticket:
    """A request's place in the queue: one future per part, reassembled in order.

    ``flagged``: the batcher's screen marked one of its rows (see the module docstring).
    ``scales``: its rows' scales, in order, when the device returns them (else None).
    ``trace``: the span context of its request, when it is traced; ``batch``: then, the span
    context and start (ns) of the first device call that ran its rows.
    """

    __slots__ = ("batch", "deadline", "flagged", "futures", "scales", "trace")

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[list[float]]] = []
        self.deadline: Timeouts[Ticket] | None = None
        self.flagged = False
        self.scales: list[float] | None = None
        self.trace: object | None = None  # opaque here: app.observe.tracing's SpanContext
        self.batch: tuple[object, int] | None = None

    def abandon(self, exc: BaseException) -> None:
        """Fail the parts that have no result yet; the consumer drops their rows unrun."""
        for f in self.futures:
            if not f.done():
                f.set_exception(exc)

    async def result(self) -> list[float]:
        try:
            if len(self.futures) == 1:
                return await self.futures[0]
            values: list[float] = []
            for f in self.futures:
                values += await f
            return values
        finally:
            if self.deadline is not None:
                self.deadline.discard(self)
            for f in self.futures:  # a failed or cancelled part: drop the others unrun
                f.cancel()


@dataclass
class BatchStats:
    device_calls: int = 0
    rows: int = 0
    dropped_rows: int = 0
    failed_calls: int = 0


class _Item(Generic[M]):
    __slots__ = ("enqueued", "future", "model", "rows", "size", "ticket")

    def __init__(
        self,
        rows: np.ndarray,
        future: asyncio.Future[list[float]],
        ticket: Ticket,
        model: M | None,
    ) -> None:
        self.rows = rows
        self.size: int = rows.shape[0]
        self.future = future
        self.ticket = ticket
        self.model = model
        self.enqueued = time.monotonic()


class Batcher(Generic[M]):
    def __init__(
        self,
        call: DeviceCall[M],
        executor: Executor | None,
        *,
        max_batch_size: int,
        max_delay_s: float,
        queue_rows: int,
        max_chunk: int,
        observer: BatchObserver | None = None,
        screen: Screen[M] | None = None,
        tracer: BatchTracer[M] | None = None,
    ) -> None:
        if max_batch_size < 1 or queue_rows < 1 or max_chunk < 1 or max_delay_s < 0:
            raise ValueError("batch size, queue rows and chunk must be positive, delay >= 0")
        self._call = call
        self._executor = executor
        self._observer = observer
        self._screen = screen
        self._tracer = tracer
        # One Timeouts per deadline length (callers nearly always use one).
        self._deadlines: dict[float, Timeouts[Ticket]] = {}
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_rows = queue_rows
        self.combine = max_batch_size > 1
        self._part_rows = max_batch_size if self.combine else max_chunk
        self._queue: deque[_Item[M]] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        # ``with batcher.arrivals:`` around a request's reading and parsing (see Arrivals).
        self.arrivals = Arrivals(self._wakeup)
        self._task: asyncio.Task[None] | None = None
        # Built inside the running loop (the lifespan); kept, as the hot path needs it often.
        self._loop = asyncio.get_running_loop()
        self.stats = BatchStats()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        # Keep a hard reference: the loop holds tasks weakly, and a collected consumer would
        # leave every request waiting forever.
        self._task = self._loop.create_task(self._consume(), name="batcher")

    async def stop(self) -> None:
        """Cancel the consumer and fail whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for deadlines in self._deadlines.values():
            deadlines.clear()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(ShuttingDown("the server is shutting down"))
        self._queued_rows = 0

    def submit(
        self, rows: np.ndarray, timeout_s: float | None = None, model: M | None = None
    ) -> Ticket:
        """Queue ``rows`` for ``model``; ``await ticket.result()`` gives their results, in
        order, as floats.

        After ``timeout_s`` the ticket fails with ``DeadlineExceeded`` and its rows that have
        not run yet are dropped. Raises ``Overloaded`` at once when the queue is full.
        """
        if self._task is None:
            raise ShuttingDown("the batcher is not running")
        n = rows.shape[0]
        if self._queued_rows + n > self.queue_rows:
            raise Overloaded(
                f"{self._queued_rows} rows are queued and the limit is {self.queue_rows}"
            )
        loop = self._loop
        ticket = Ticket()
        step = self._part_rows
        for part in (rows,) if n <= step else (rows[i : i + step] for i in range(0, n, step)):
            item = _Item(part, loop.create_future(), ticket, model)
            self._queue.append(item)
            ticket.futures.append(item.future)
        self._queued_rows += n
        self._wakeup.set()
        if timeout_s is not None:
            deadlines = self._deadlines.get(timeout_s)
            if deadlines is None:
                deadlines = self._deadlines[timeout_s] = Timeouts(timeout_s, _expire)
            ticket.deadline = deadlines
            deadlines.add(ticket)
        return ticket

    def _batch_ready(self) -> bool:
        if not self._queue:
            return False
        if not self.combine or self._queued_rows >= self.max_batch_size or not self.arrivals.count:
            return True
        return time.monotonic() - self._queue[0].enqueued >= self.max_delay_s

    async def _wait_for_batch(self) -> None:
        while not self._batch_ready():
            self._wakeup.clear()
            timeout = None
            if self._queue:
                waited = time.monotonic() - self._queue[0].enqueued
                timeout = max(self.max_delay_s - waited, 0)
            # asyncio.TimeoutError: on Python 3.10 (Neuron's containers) it is not TimeoutError.
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _take_batch(self) -> list[_Item[M]]:
        items: list[_Item[M]] = []
        rows = 0
        model: M | None = None
        while self._queue:
            head = self._queue[0]
            size = head.size
            if items and (
                not self.combine or rows + size > self.max_batch_size or head.model is not model
            ):
                break
            self._queue.popleft()
            self._queued_rows -= size
            if head.future.done():  # abandoned: deadline passed or the client went away
                self.stats.dropped_rows += size
                if self._observer is not None:
                    self._observer.observe_dropped(size)
                continue
            if not items:
                model = head.model  # the first live item decides the batch's model
            items.append(head)
            rows += size
        return items

    async def _consume(self) -> None:
        loop = self._loop
        under_load = False
        while True:
            await self._wait_for_batch()
            if under_load and self._queued_rows < self.max_batch_size:
                await asyncio.sleep(0)  # two loop passes: see the module docstring
                await asyncio.sleep(0)
            items = self._take_batch()
            under_load = len(items) > 1
            if not items:
                continue
            batch = items[0].rows if len(items) == 1 else np.concatenate([i.rows for i in items])
            model = items[0].model
            self.stats.device_calls += 1
            self.stats.rows += batch.shape[0]
            started = time.monotonic()
            started_ns = time.time_ns() if self._tracer is not None else 0
            try:
                if self._executor is None:
                    out = self._call(batch, model)
                else:
                    out = await loop.run_in_executor(self._executor, self._call, batch, model)
            except asyncio.CancelledError:  # stop() during a device call
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(ShuttingDown("the server is shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear of it
                self._trace(items, batch.shape[0], started_ns, model, exc)
                self._fail(items, exc)
                continue
            self._trace(items, batch.shape[0], started_ns, model, None)
            if self._observer is not None:
                waits = [started - item.enqueued for item in items]
                device_s = time.monotonic() - started
                self._observer.observe_batch(batch.shape[0], device_s, waits, self._queued_rows)
            if out.shape[0] != batch.shape[0]:
                count = f"{out.shape[0]} results for {batch.shape[0]} rows"
                self._fail(items, RuntimeError(f"the device returned {count}"))
                continue
            dollars, scales = (out[:, 0], out[:, 1].tolist()) if out.ndim == 2 else (out, None)
            values = dollars.tolist()
            start = 0
            for item in items:
                end = start + item.size
                if not item.future.done():
                    if scales is not None:  # parts finish in order: a ticket's scales too
                        ticket = item.ticket
                        if ticket.scales is None:
                            ticket.scales = scales[start:end]
                        else:
                            ticket.scales += scales[start:end]
                    item.future.set_result(values[start:end])
                start = end
            flagged = self._screen(batch, dollars, model) if self._screen is not None else []
            if flagged:
                starts = list(accumulate((item.size for item in items[:-1]), initial=0))
                for row in flagged:
                    items[bisect.bisect_right(starts, row) - 1].ticket.flagged = True

    def _trace(
        self,
        items: list[_Item[M]],
        rows: int,
        started_ns: int,
        model: M | None,
        error: BaseException | None,
    ) -> None:
        tracer = self._tracer
        if tracer is not None and any(item.ticket.trace is not None for item in items):
            tickets = list({id(i.ticket): i.ticket for i in items}.values())
            tracer(tickets, rows, started_ns, time.time_ns(), model, error)

    def _fail(self, items: list[_Item[M]], exc: Exception) -> None:
        self.stats.failed_calls += 1
        if self._observer is not None:
            self._observer.observe_failure(exc)
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)


def _expire(ticket: Ticket) -> None:
    deadline = ticket.deadline
    assert deadline is not None
    ticket.abandon(DeadlineExceeded(f"no result within {deadline.delay}s"))
