"""FaultyDevice: a test seam that makes device calls fail, in a real server process.

    FAULTY_DEVICE_POISON=7.7777 python -m tests.fakes.faulty_device

runs ``python -m app``'s single-process server with the loaded backend wrapped (after warm-up,
through ``ModelRuntime(wrap_backend=...)``) so that

* ``FAULTY_DEVICE_POISON=<x>``: a call fails when any of its rows has ``median_income == x``
  (a poisoned request fails its whole batch, as a real device error would);
* ``FAULTY_DEVICE_FAIL_CALLS=<n>``: the first ``n`` calls after startup fail, then it recovers;
* ``FAULTY_DEVICE_GATE=<fifo>``: every call prints ``faulty-device: holding a call of <rows>
  rows`` and waits until the test writes a byte to the named pipe ``<fifo>`` (a device that
  is busy for as long as a test needs, released by an event rather than a timer).

Every failed call prints ``faulty-device: failed a call of <rows> rows`` on stderr, so a test
can match the 500s it sees with the calls that failed. Nothing here touches real hardware: it
stands in for a NeuronCore that errors (a runtime fault, a lost device).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from app.backends.base import Backend
from app.core.runtime import ModelRuntime
from app.process.server import run_server
from app.settings import load_settings
from modelspec.features import NUMERIC_COLUMNS

_INCOME = NUMERIC_COLUMNS.index("median_income")


class DeviceFault(RuntimeError):
    """What the fake device raises: stands in for a Neuron runtime error."""


class FaultyDevice:
    def __init__(
        self, inner: Backend, poison: float | None, fail_calls: int, gate: str | None = None
    ) -> None:
        self.inner = inner
        self.device = inner.device
        self.batch_sizes = inner.batch_sizes
        self.dynamic_batch = inner.dynamic_batch
        self.poison = poison
        self.fail_calls = fail_calls
        self.gate = gate

    @classmethod
    def from_env(cls, inner: Backend) -> FaultyDevice:
        poison = os.environ.get("FAULTY_DEVICE_POISON")
        return cls(
            inner,
            float(poison) if poison else None,
            int(os.environ.get("FAULTY_DEVICE_FAIL_CALLS", "0")),
            os.environ.get("FAULTY_DEVICE_GATE"),
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            print(f"faulty-device: holding a call of {x.shape[0]} rows", file=sys.stderr)
            sys.stderr.flush()
            # Opening blocks until the test opens the pipe to write. A call that opens it while
            # the previous release is still open joins that writer and reads its end (no byte):
            # it opens again, so that each release lets exactly one call through.
            while True:
                with open(self.gate, "rb") as gate:
                    if gate.read(1):
                        break
        if self.fail_calls > 0:
            self.fail_calls -= 1
            self._fail(x, "scheduled fault")
        if self.poison is not None and np.any(x[:, _INCOME] == np.float32(self.poison)):
            self._fail(x, "poisoned row")
        return self.inner.predict(x)

    @staticmethod
    def _fail(x: np.ndarray, why: str) -> None:
        print(f"faulty-device: failed a call of {x.shape[0]} rows ({why})", file=sys.stderr)
        sys.stderr.flush()
        raise DeviceFault(f"NeuronCore error (injected: {why})")


def main() -> int:
    settings = load_settings()
    if settings is None:
        return 2
    return run_server(settings, runtime=ModelRuntime(settings, wrap_backend=FaultyDevice.from_env))


if __name__ == "__main__":
    sys.exit(main())
