"""SIGHUP under load: a real server swaps models back and forth while 16 clients send mixed
``/predict``, CSV and OIP requests. Every request is answered 200, and every answer equals,
for all of its rows, the eager model that its ``X-Model-Version`` names."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import pandas as pd

from reliability.workload import _csv, _oip, _read_csv, _read_many, _read_oip
from tests.e2e.server import serve
from tests.integration.conftest import records
from tests.integration.test_reload import eager, install, version

CLIENTS = 16


@dataclass(frozen=True)
class Sent:
    route: str
    body: bytes
    content_type: str
    rows: np.ndarray  # indices into the frame
    read: Callable[[bytes], np.ndarray]


@dataclass
class Answered:
    sent: Sent
    status: int
    version: str | None
    values: np.ndarray | None


def requests(frame: pd.DataFrame, count: int, seed: int = 0) -> list[Sent]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        idx = rng.choice(len(frame), size=int(rng.integers(1, 40)))
        chosen = records(frame.iloc[idx])
        if i % 3 == 0:
            body = orjson.dumps({"instances": chosen})
            out.append(Sent("/predict", body, "application/json", idx, _read_many))
        elif i % 3 == 1:
            out.append(Sent("/invocations", _csv(chosen), "text/csv", idx, _read_csv))
        else:
            infer = "/v2/models/housing/infer"
            out.append(Sent(infer, _oip(chosen), "application/json", idx, _read_oip))
    return out


class Load:
    """``CLIENTS`` connections sending ``pool`` round and round until ``stop``."""

    def __init__(self, url: str, pool: list[Sent]) -> None:
        self.url, self.pool = url, pool
        self.answers: list[Answered] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def wait_for(self, count: int, timeout: float = 60) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.answers) >= count, timeout)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(self.url) as session:
            await asyncio.gather(*(self._client(session, i) for i in range(CLIENTS)))

    async def _client(self, session: aiohttp.ClientSession, offset: int) -> None:
        n = offset
        while not self.stop.is_set():
            sent = self.pool[n % len(self.pool)]
            n += CLIENTS
            headers = {"content-type": sent.content_type}
            async with session.post(sent.route, data=sent.body, headers=headers) as r:
                body = await r.read()
                got = sent.read(body)[:, 0] if r.status == 200 else None
                answered = Answered(sent, r.status, r.headers.get("x-model-version"), got)
            with self.progress:
                self.answers.append(answered)
                self.progress.notify_all()


def test_sighup_swaps_models_under_load_without_a_failed_or_mixed_answer(
    tmp_path: Path, artifacts: Path, other_artifacts: Path, housing_frame: pd.DataFrame
) -> None:
    frame = housing_frame.sample(2000, random_state=0).reset_index(drop=True)
    expected = {version(a): eager(a, frame) for a in (artifacts, other_artifacts)}
    first, second = version(artifacts), version(other_artifacts)
    install(artifacts, tmp_path)
    with serve(tmp_path, HOUSING_DEVICE="cpu") as server:
        server.wait_ready()
        assert server.proc is not None
        load = Load(server.url, requests(frame, 300))
        load.thread.start()
        try:
            for n, (source, new) in enumerate(
                [(other_artifacts, second), (artifacts, first), (other_artifacts, second)], 1
            ):
                load.wait_for(200 * n)
                install(source, tmp_path)
                server.proc.send_signal(signal.SIGHUP)
                server.wait_for_output(f"model {new} replaces", count=(n + 1) // 2)
            load.wait_for(200 * 4)
        finally:
            load.stop.set()
            load.thread.join(30)
        assert server.terminate() == 0
    statuses = {a.status for a in load.answers}
    assert statuses == {200}, statuses
    assert {a.version for a in load.answers} == {first, second}
    for a in load.answers:
        assert a.version is not None and a.values is not None
        want = expected[a.version][a.sent.rows]
        np.testing.assert_allclose(a.values, want, rtol=1e-5, err_msg=a.sent.route)
    assert "reload refused" not in server.output


def test_the_supervisor_relays_sighup_to_every_worker(
    tmp_path: Path, artifacts: Path, other_artifacts: Path
) -> None:
    install(artifacts, tmp_path)
    new = version(other_artifacts)
    with serve(tmp_path, HOUSING_DEVICE="cpu", HOUSING_WORKERS="2") as server:
        server.wait_ready()
        server.wait_for_output("worker 1 serving")
        server.wait_for_output("worker 0 serving")
        assert server.proc is not None
        install(other_artifacts, tmp_path)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("SIGHUP: relayed to 2 worker(s)")
        server.wait_for_output(f"model {new} replaces", count=2)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(10):  # new connections reach both workers
                answer = client.get("/health/ready")
                assert answer.headers["x-model-version"] == new
        assert server.terminate() == 0
