"""Many timeouts of one length on a single loop timer: the per-request timers of the hot path.

A request's deadline and its late disconnect watch are timeouts that nearly always end early,
because the request is answered first. A loop timer each (``call_later``, then ``cancel``) cost
a request more than its validation did; a ``Timeouts`` costs a dict insert and a delete.

``Timeouts(delay, on_due)``: ``add(key)`` starts ``key``'s timeout and ``discard(key)`` ends it;
``on_due(key)`` runs ``delay`` seconds after ``add`` for each key still there, and the key is
then gone. Every key has the same delay, so insertion order is due order and only the oldest
key needs a timer: one timer is armed at a time, for the oldest key's due time, and re-armed
for the next oldest when it fires. A key is never due early, and late only by the event loop's
own delay. ``on_due`` must not raise; keys due together are handed over oldest first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Timeouts(Generic[K]):
    __slots__ = ("_due", "_loop", "_on_due", "_timer", "delay")

    def __init__(self, delay: float, on_due: Callable[[K], object]) -> None:
        if delay < 0:
            raise ValueError(f"a timeout's delay must be >= 0, got {delay}")
        self.delay = delay
        self._on_due = on_due
        self._due: dict[K, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        # The running loop, taken by add: the owner of a Timeouts may be built before the
        # server's loop exists, or (in tests) outlive one loop and serve in the next.
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.clear()  # what another loop left has no timer that can fire here
            self._loop = loop
        at = loop.time() + self.delay
        self._due[key] = at
        if self._timer is None:
            self._timer = loop.call_at(at, self._fire)

    def discard(self, key: K) -> None:
        self._due.pop(key, None)

    def clear(self) -> None:
        """End every timeout, with no callback."""
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        due: list[K] = []
        for key, at in self._due.items():
            if at > now:
                self._timer = self._loop.call_at(at, self._fire)
                break
            due.append(key)
        for key in due:
            del self._due[key]
        for key in due:
            self._on_due(key)
