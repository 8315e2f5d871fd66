"""Load from client threads: each thread calls the server until it is refused, and the
outcomes are counted (``warm`` once enough calls succeeded)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Self


class ThreadLoad:
    """``threads`` threads running ``run``, which reports each outcome to ``record``.

    ``ok``: the outcome of a call that succeeded; ``warm`` is set once ``warm_after`` of them
    were counted."""

    def __init__(self, threads: int, ok: str, warm_after: int = 50) -> None:
        self.outcomes: Counter[str] = Counter()
        self.warm = threading.Event()
        self._ok = ok
        self._warm_after = warm_after
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        """One thread's calls, until the server refuses one."""
        raise NotImplementedError

    def counted(self, outcome: str) -> None:
        """Called with each outcome, under the lock that counts it (nothing more by default)."""

    def record(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            self.counted(outcome)
            if self.outcomes[self._ok] >= self._warm_after:
                self.warm.set()

    def start(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)
