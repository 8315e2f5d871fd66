"""Timeouts: many same-length timeouts on one timer -- due in order, never early, never twice."""

from __future__ import annotations

import asyncio

import pytest

from app.core.timeouts import Timeouts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Record:
    def __init__(self) -> None:
        self.fired: list[tuple[str, float]] = []
        self.event = asyncio.Event()

    def __call__(self, key: str) -> None:
        self.fired.append((key, asyncio.get_running_loop().time()))
        self.event.set()

    async def next(self) -> None:
        self.event.clear()
        await asyncio.wait_for(self.event.wait(), 5)


async def test_a_key_still_there_is_due_after_the_delay_and_not_before() -> None:
    record = Record()
    timeouts: Timeouts[str] = Timeouts(0.02, record)
    loop = asyncio.get_running_loop()
    added = loop.time()
    timeouts.add("a")
    await record.next()
    assert [key for key, _ in record.fired] == ["a"]
    assert record.fired[0][1] >= added + 0.02
    assert len(timeouts) == 0


async def test_a_discarded_key_never_fires_and_the_next_one_still_does() -> None:
    record = Record()
    timeouts: Timeouts[str] = Timeouts(0.01, record)
    for key in ("gone", "kept", "also gone", "last"):
        timeouts.add(key)
    timeouts.discard("gone")
    timeouts.discard("also gone")
    timeouts.discard("never added")
    while len(record.fired) < 2:
        await record.next()
    assert [key for key, _ in record.fired] == ["kept", "last"]


async def test_keys_added_later_fire_later_in_order() -> None:
    record = Record()
    timeouts: Timeouts[str] = Timeouts(0.01, record)
    timeouts.add("first")
    await record.next()  # the timer has fired and found nothing else
    timeouts.add("second")
    timeouts.add("third")
    while len(record.fired) < 3:
        await record.next()
    keys = [key for key, _ in record.fired]
    times = [at for _, at in record.fired]
    assert keys == ["first", "second", "third"]
    assert times == sorted(times)


async def test_clear_ends_every_timeout_without_a_callback() -> None:
    record = Record()
    timeouts: Timeouts[str] = Timeouts(0.01, record)
    timeouts.add("a")
    timeouts.clear()
    timeouts.add("b")  # the cleared timer is gone: a new one is armed for b
    await record.next()
    assert [key for key, _ in record.fired] == ["b"]


def test_it_serves_a_second_event_loop_after_the_first_has_closed() -> None:
    record = Record()
    timeouts: Timeouts[str] = Timeouts(0.005, record)

    async def one(key: str) -> None:
        record.event = asyncio.Event()
        timeouts.add(key)
        await record.next()

    asyncio.run(one("in the first loop"))
    asyncio.run(one("in the second"))
    assert [key for key, _ in record.fired] == ["in the first loop", "in the second"]


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Timeouts(-1.0, print)
