"""The batcher with plain objects: a recording device function instead of a model."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.core.batching import Batcher, DeadlineExceeded, Overloaded, ShuttingDown, Ticket
from tests.support.loop import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Device:
    """Doubles column 0; records each call's batch size and model; can be held or made to
    fail."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.models: list[str | None] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.drop_one = False

    def __call__(self, x: np.ndarray, model: str | None = None) -> np.ndarray:
        self.gate.wait(5)
        self.calls.append(x.shape[0])
        self.models.append(model)
        if self.fail is not None:
            raise self.fail
        out = x[:, 0] * 2
        return out[:-1] if self.drop_one else out


def rows(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values])


# The device thread; tests that hold the device need it, or the gate would block the loop.
DEVICE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-device")


def make(device: Device, inline: bool = False, **kw: int | float) -> Batcher:
    options: dict[str, int | float] = {
        "max_batch_size": 8,
        "max_delay_s": 0.05,
        "queue_rows": 64,
        "max_chunk": 4,
    }
    options.update(kw)
    batcher = Batcher(device, None if inline else DEVICE_THREAD, **options)  # type: ignore[arg-type]
    batcher.start()
    return batcher


async def busy(device: Device, **kw: int | float) -> tuple[Batcher, Ticket]:
    """A batcher whose device is held inside a first call (of one row, value 0)."""
    device.gate.clear()
    batcher = make(device, **kw)
    first = batcher.submit(rows(0))
    await until(lambda: batcher.queued_rows == 0)  # the first call has started
    return batcher, first


async def test_a_lone_request_runs_at_once() -> None:
    device = Device()
    batcher = make(device, max_delay_s=60)  # the timer would never fire within the test
    result = await batcher.submit(rows(1, 2)).result()
    assert result == [2, 4]
    assert device.calls == [2]
    await batcher.stop()


async def test_inline_calls_run_on_the_loop_thread() -> None:
    device = Device()
    seen: list[str] = []

    def call(x: np.ndarray, model: None) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return device(x)

    batcher = Batcher(call, None, max_batch_size=8, max_delay_s=0.05, queue_rows=64, max_chunk=4)
    batcher.start()
    assert await batcher.submit(rows(1)).result() == [2]
    assert seen == [threading.current_thread().name]
    await batcher.stop()


async def test_flush_on_size_while_requests_are_arriving() -> None:
    device = Device()
    batcher = make(device, max_batch_size=4, max_delay_s=60)
    with batcher.arrivals:  # another request is on its way: the consumer waits for rows
        tickets = [batcher.submit(rows(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert device.calls == []
        tickets.append(batcher.submit(rows(3)))  # 4 rows: full
        results = [await t.result() for t in tickets]
    assert device.calls == [4]
    assert results == [[0], [2], [4], [6]]
    await batcher.stop()


async def test_flush_on_deadline_while_a_request_is_arriving() -> None:
    device = Device()
    batcher = make(device, max_delay_s=0.02)
    loop = asyncio.get_running_loop()
    with batcher.arrivals:
        started = loop.time()
        result = await batcher.submit(rows(5)).result()
        waited = loop.time() - started
    assert result == [10]
    assert device.calls == [1]
    assert waited >= 0.02
    await batcher.stop()


async def test_queued_requests_share_one_device_call() -> None:
    device = Device()
    batcher, first = await busy(device)
    later = [batcher.submit(rows(i)) for i in range(1, 6)]
    device.gate.set()
    results = [await t.result() for t in [first, *later]]
    assert device.calls == [1, 5]
    assert results == [[2 * i] for i in range(6)]
    await batcher.stop()


async def test_under_load_a_request_two_loop_passes_behind_joins_the_batch() -> None:
    device = Device()
    batcher = make(device, inline=True, max_delay_s=60)
    loop = asyncio.get_running_loop()
    await asyncio.gather(batcher.submit(rows(1)).result(), batcher.submit(rows(2)).result())
    assert device.calls == [2]  # a combined batch: the batcher is under load
    late: list[Ticket] = []
    first = batcher.submit(rows(3))
    loop.call_soon(loop.call_soon, lambda: late.append(batcher.submit(rows(4))))
    assert await first.result() == [6]
    assert await late[0].result() == [8]
    assert device.calls == [2, 2]
    # Not under load (the last batch was one request): a lone request does not wait a pass.
    await batcher.submit(rows(5)).result()
    first = batcher.submit(rows(6))
    loop.call_soon(lambda: late.append(batcher.submit(rows(7))))
    assert await first.result() == [12]
    assert await late[1].result() == [14]
    assert device.calls == [2, 2, 1, 1, 1]
    await batcher.stop()


async def test_a_large_request_is_split_and_reassembled_in_order() -> None:
    device = Device()
    batcher = make(device, max_batch_size=4)
    values = list(range(11))
    result = await batcher.submit(rows(*values)).result()
    assert result == [2 * v for v in values]
    assert sum(device.calls) == 11
    assert max(device.calls) <= 4
    await batcher.stop()


async def test_batch_size_one_turns_batching_off() -> None:
    device = Device()
    batcher, first = await busy(device, max_batch_size=1, max_chunk=4)
    small = [batcher.submit(rows(1)), batcher.submit(rows(2))]
    big = batcher.submit(rows(*range(6)))  # one request: chunks of max_chunk, not of 1
    device.gate.set()
    for t in [first, *small, big]:
        await t.result()
    assert device.calls == [1, 1, 1, 4, 2]
    await batcher.stop()


async def test_a_device_error_reaches_every_request_of_the_batch_only() -> None:
    device = Device()
    batcher, first = await busy(device)
    device.fail = RuntimeError("device fault")
    doomed = [batcher.submit(rows(1)), batcher.submit(rows(2))]
    device.gate.set()  # the first call fails too: it reaches `fail` after the gate
    for t in [first, *doomed]:
        with pytest.raises(RuntimeError, match="device fault"):
            await t.result()
    device.fail = None
    assert await batcher.submit(rows(3)).result() == [6]
    assert batcher.stats.failed_calls == 2
    await batcher.stop()


async def test_a_wrong_result_count_fails_the_batch() -> None:
    device = Device()
    device.drop_one = True
    batcher = make(device)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 rows"):
        await batcher.submit(rows(1, 2)).result()
    await batcher.stop()


async def test_a_full_queue_refuses_at_once() -> None:
    device = Device()
    batcher, first = await busy(device, queue_rows=4)
    queued = batcher.submit(rows(1, 2, 3))
    with pytest.raises(Overloaded, match="3 rows are queued and the limit is 4"):
        batcher.submit(rows(4, 5))
    device.gate.set()
    await first.result()
    await queued.result()
    await batcher.stop()


async def test_an_expired_request_is_dropped_before_the_device_call() -> None:
    device = Device()
    batcher, first = await busy(device)
    expired = batcher.submit(rows(7, 8), timeout_s=0.01)
    with pytest.raises(DeadlineExceeded):
        await expired.result()
    device.gate.set()
    await first.result()
    assert await batcher.submit(rows(1)).result() == [2]
    assert device.calls == [1, 1]  # rows 7 and 8 never reached the device
    assert batcher.stats.dropped_rows == 2
    await batcher.stop()


async def test_an_abandoned_request_is_dropped() -> None:
    device = Device()
    batcher, first = await busy(device)
    gone = batcher.submit(rows(9))
    gone.abandon(ConnectionResetError("client went away"))
    device.gate.set()
    await first.result()
    with pytest.raises(ConnectionResetError):
        await gone.result()
    assert await batcher.submit(rows(1)).result() == [2]
    assert device.calls == [1, 1]
    await batcher.stop()


async def test_stop_fails_the_running_and_the_queued_requests() -> None:
    device = Device()
    batcher, running = await busy(device)
    stranded = batcher.submit(rows(1))
    await batcher.stop()
    device.gate.set()
    for ticket in (running, stranded):
        with pytest.raises(ShuttingDown):
            await ticket.result()


async def test_the_screen_runs_once_per_batch_and_flags_only_the_tickets_it_names() -> None:
    screened: list[int] = []

    def screen(batch: np.ndarray, out: np.ndarray, model: None) -> list[int]:
        screened.append(batch.shape[0])
        return np.flatnonzero(out > 10).tolist()  # rows whose doubled value is above 10

    device = Device()
    device.gate.clear()
    batcher = Batcher(
        device, DEVICE_THREAD, max_batch_size=8, max_delay_s=0.05, queue_rows=64, max_chunk=4,
        screen=screen,
    )  # fmt: skip
    batcher.start()
    first = batcher.submit(rows(0))
    await until(lambda: batcher.queued_rows == 0)  # the device holds the first call
    calm, hot, split = batcher.submit(rows(1, 2)), batcher.submit(rows(3, 6)), None
    device.gate.set()
    await first.result()
    await calm.result()
    await hot.result()
    assert screened == [1, 4]
    assert (first.flagged, calm.flagged, hot.flagged) == (False, False, True)
    # A request split into parts (max_batch_size 8 here: 9 rows) is flagged by any part.
    split = batcher.submit(rows(1, 1, 1, 1, 1, 1, 1, 1, 9))
    assert (await split.result())[-1] == 18
    assert split.flagged
    await batcher.stop()


async def test_a_device_with_scales_gives_each_ticket_its_rows_scales_in_order() -> None:
    def scaled(x: np.ndarray, model: None) -> np.ndarray:  # (n, 2): values, and scales / 10
        return np.column_stack((x[:, 0] * 2, x[:, 0] / 10))

    batcher = Batcher(scaled, None, max_batch_size=4, max_delay_s=0.05, queue_rows=64, max_chunk=4)
    batcher.start()
    small = batcher.submit(rows(1, 2))
    big = batcher.submit(rows(*range(10, 20)))  # parts of 4 rows, in several device calls
    assert await small.result() == [2, 4]
    assert small.scales == [0.1, 0.2]
    assert await big.result() == [v * 2 for v in range(10, 20)]
    assert big.scales == [v / 10 for v in range(10, 20)]
    plain = batcher.submit(rows(3))
    assert await plain.result() == [6] and plain.scales == [0.3]
    await batcher.stop()


async def test_a_device_without_scales_leaves_tickets_without_them() -> None:
    batcher = make(Device(), inline=True)
    ticket = batcher.submit(rows(1, 2))
    assert await ticket.result() == [2, 4]
    assert ticket.scales is None
    await batcher.stop()


async def test_a_batch_holds_one_models_rows_and_queued_rows_keep_their_model() -> None:
    # The runtime swaps models between device calls: rows queued for the old model still run
    # on it, the new model's start with the next batch, and a split request stays on one.
    device, held = Device(), "old"
    batcher, first = await busy(device, max_batch_size=8)
    old = batcher.submit(rows(1, 2), model=held)
    split = batcher.submit(rows(*range(10, 22)), model=held)  # 12 rows: parts of 8 and 4
    new = batcher.submit(rows(3), model="new")
    again = batcher.submit(rows(4), model=held)  # queued after the new model's: its own batch
    device.gate.set()
    await first.result()
    assert await old.result() == [2, 4]
    assert await split.result() == [v * 2 for v in range(10, 22)]
    assert await new.result() == [6]
    assert await again.result() == [8]
    # The held first call; old with the split's first part (2 + 8 > 8: alone); the split's
    # second part; the new model; the old model again.
    assert list(zip(device.models, device.calls, strict=True)) == [
        (None, 1),
        ("old", 2),
        ("old", 8),
        ("old", 4),
        ("new", 1),
        ("old", 1),
    ]
    await batcher.stop()
