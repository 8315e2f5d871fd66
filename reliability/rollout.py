"""Roll a new model out under load, and back, without one failed or mixed answer.

    python -m reliability.rollout [--other DIR] [--concurrency 32] [--seed 7]

Two models: the artifacts (``HOUSING_ARTIFACTS``) and another trained with ``--seed`` (made in
``--other`` by ``python -m training`` and ``python -m compile`` unless it is there already).
A real server serves a working copy of the first; ``--concurrency`` clients send mixed
``/predict`` (one record and batches), SageMaker CSV and OIP requests, while the script swaps the
working folder's files and reloads five times, back and forth (the repository route and
``SIGHUP`` in turn), then tries a tampered artifact and a manifest with another feature hash.

Passes when every request was answered 200, every answer equals, for all of its rows, the eager
model (``model.pt``) that its ``X-Model-Version`` names (relative error <= 1e-5), both bad
artifacts were refused (400) while serving went on, and the p99 latency while reloading is
within 2x of the steady state's. Prints the swap times and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import pandas as pd

from modelspec.features import RAW_COLUMNS
from modelspec.manifest import MANIFEST_FILE, Manifest
from reliability.server import serve
from reliability.workload import (
    csv_body,
    data_path,
    eager_dollars,
    oip_body,
    read_csv_lines,
    read_many,
    read_oip_outputs,
    read_one,
)

LOAD = "/v2/repository/models/housing/load"
RELATIVE_TOLERANCE = 1e-5
RELOADS = 5


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
    started: float
    seconds: float


def mixed_requests(frame: pd.DataFrame, count: int, seed: int = 0) -> list[Sent]:
    """``count`` requests over ``frame``'s rows: a third single records and batches on
    ``/predict``, a third CSV on ``/invocations``, a third OIP, each of 1-40 random rows."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, object]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    for r in records:
        if r["total_bedrooms"] != r["total_bedrooms"]:  # NaN: missing
            r["total_bedrooms"] = None
    out = []
    for i in range(count):
        idx = rng.choice(len(frame), size=1 if i % 6 == 0 else int(rng.integers(2, 40)))
        chosen = [records[j] for j in idx]
        if i % 3 == 0:
            single = len(chosen) == 1
            body = orjson.dumps(chosen[0] if single else {"instances": chosen})
            read = read_one if single else read_many
            out.append(Sent("/predict", body, "application/json", idx, read))
        elif i % 3 == 1:
            out.append(Sent("/invocations", csv_body(chosen), "text/csv", idx, read_csv_lines))
        else:
            infer = "/v2/models/housing/infer"
            out.append(Sent(infer, oip_body(chosen), "application/json", idx, read_oip_outputs))
    return out


class Load:
    """``clients`` connections sending ``pool`` round and round until ``stop``."""

    def __init__(self, url: str, pool: list[Sent], clients: int) -> None:
        self.url, self.pool, self.clients = url, pool, clients
        self.answers: list[Answered] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def wait_for(self, count: int, timeout: float = 120) -> None:
        with self.progress:
            if not self.progress.wait_for(lambda: len(self.answers) >= count, timeout):
                raise TimeoutError(f"only {len(self.answers)} of {count} answers came")

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.clients)
        async with aiohttp.ClientSession(self.url, connector=connector) as session:
            await asyncio.gather(*(self._client(session, i) for i in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession, offset: int) -> None:
        n = offset
        while not self.stop.is_set():
            sent = self.pool[n % len(self.pool)]
            n += self.clients
            started = time.perf_counter()
            headers = {"content-type": sent.content_type}
            async with session.post(sent.route, data=sent.body, headers=headers) as r:
                body = await r.read()
            got = sent.read(body)[:, 0] if r.status == 200 else None
            seconds = time.perf_counter() - started
            answer = Answered(
                sent, r.status, r.headers.get("x-model-version"), got, started, seconds
            )
            with self.progress:
                self.answers.append(answer)
                self.progress.notify_all()


def install(source: Path, folder: Path) -> None:
    """Copy an artifacts folder's files over ``folder``'s, each atomically, the manifest last."""
    files = sorted(
        (p for p in source.iterdir() if p.is_file()), key=lambda p: p.name == MANIFEST_FILE
    )
    for path in files:
        tmp = folder / f".{path.name}.tmp"
        shutil.copy2(path, tmp)
        tmp.replace(folder / path.name)


def make_other(folder: Path, seed: int) -> None:
    """Train (``--seed``) and compile the second model into ``folder``, unless it is there."""
    if (folder / MANIFEST_FILE).is_file() and Manifest.load(folder).compiled is not None:
        return
    env = {**os.environ, "HOUSING_ARTIFACTS": str(folder)}
    print(f"training the second model (seed {seed}) into {folder}", flush=True)
    for args in (["training", "--seed", str(seed), "--no-progress"], ["compile"]):
        subprocess.run([sys.executable, "-m", *args], env=env, check=True, capture_output=True)


def p99(seconds: list[float]) -> float:
    return float(np.percentile(seconds, 99)) if seconds else float("nan")


def version(artifacts: Path) -> str:
    return Manifest.load(artifacts).model_version


@dataclass
class Report:
    answers: list[Answered]
    swaps: list[tuple[str, str, float]]  # trigger, new version, seconds
    refusals: list[tuple[str, int, str]]  # what, status, error
    steady_p99: float
    reload_p99: float
    wrong: list[str]

    @property
    def passed(self) -> bool:
        refused = all(status == 400 for _, status, _ in self.refusals) and len(self.refusals) == 2
        ratio_ok = self.reload_p99 <= 2 * self.steady_p99
        return not self.wrong and refused and ratio_ok and len(self.swaps) == RELOADS

    def lines(self) -> list[str]:
        by_version: dict[str | None, int] = {}
        for a in self.answers:
            by_version[a.version] = by_version.get(a.version, 0) + 1
        statuses: dict[int, int] = {}
        for a in self.answers:
            statuses[a.status] = statuses.get(a.status, 0) + 1
        rows = sum(len(a.sent.rows) for a in self.answers)
        out = [
            f"requests {len(self.answers)}  rows {rows}  statuses {statuses}",
            "answers by model: " + "  ".join(f"{v}: {n}" for v, n in by_version.items()),
            "swaps: " + "  ".join(f"{how} -> {v} {s * 1000:.0f} ms" for how, v, s in self.swaps),
            "bad artifacts: " + "; ".join(f"{w}: {s} {e[:80]}" for w, s, e in self.refusals),
            f"p99 steady {self.steady_p99 * 1000:.1f} ms, while reloading "
            f"{self.reload_p99 * 1000:.1f} ms ({self.reload_p99 / self.steady_p99:.2f}x, <= 2x)",
            f"answers equal to the eager model they name: {len(self.answers) - len(self.wrong)}"
            f"/{len(self.answers)}",
        ]
        return out + [f"  WRONG {w}" for w in self.wrong[:10]]


def check(answers: list[Answered], expected: dict[str, np.ndarray]) -> list[str]:
    wrong = []
    for n, a in enumerate(answers):
        if a.status != 200 or a.values is None or a.version not in expected:
            wrong.append(f"#{n} {a.sent.route}: {a.status}, model {a.version}")
            continue
        want = expected[a.version][a.sent.rows]
        relative = float(np.max(np.abs(a.values - want) / np.abs(want)))
        if not relative <= RELATIVE_TOLERANCE:
            wrong.append(f"#{n} {a.sent.route}: off by {relative:.2e} from model {a.version}")
    return wrong


def rollout(artifacts: Path, other: Path, frame: pd.DataFrame, clients: int) -> Report:
    first, second = version(artifacts), version(other)
    if first == second:
        raise SystemExit(f"both folders hold model {first}: train the other with another seed")
    expected = {first: eager_dollars(artifacts, frame), second: eager_dollars(other, frame)}
    work = Path(tempfile.mkdtemp(prefix="rollout-"))
    install(artifacts, work)
    swaps: list[tuple[str, str, float]] = []
    refusals: list[tuple[str, int, str]] = []
    with serve(work, HOUSING_DEVICE="cpu", HOUSING_CONTROL_OPEN="true") as server:
        server.wait_ready()
        assert server.proc is not None
        load = Load(server.url, mixed_requests(frame, 600), clients)
        load.thread.start()
        http = httpx.Client(base_url=server.url, timeout=60)
        try:
            load.wait_for(500)  # warm
            begin = time.perf_counter()
            load.wait_for(3000)  # steady state
            reloading = time.perf_counter()
            for n in range(RELOADS):
                source, new = (other, second) if n % 2 == 0 else (artifacts, first)
                install(source, work)
                if n % 2 == 0:
                    answer = http.post(LOAD)
                    answer.raise_for_status()
                    swaps.append(("route", new, float(answer.json()["seconds"])))
                else:
                    said = server.output.count(f"model {new} replaces")
                    started = time.perf_counter()
                    server.proc.send_signal(signal.SIGHUP)
                    server.wait_for_output(f"model {new} replaces", count=said + 1)
                    swaps.append(("SIGHUP", new, time.perf_counter() - started))
                load.wait_for(len(load.answers) + 600)
            reloaded = time.perf_counter()
            install(artifacts, work)
            with (work / "model_neuron.pt").open("ab") as artifact:
                artifact.write(b"tampered")
            answer = http.post(LOAD)
            refusals.append(
                ("tampered artifact", answer.status_code, answer.json().get("error", ""))
            )
            install(artifacts, work)
            manifest = json.loads((work / MANIFEST_FILE).read_text())
            manifest["feature_hash"] = "0" * 64
            (work / MANIFEST_FILE).write_text(json.dumps(manifest))
            answer = http.post(LOAD)
            refusals.append(
                ("another feature hash", answer.status_code, answer.json().get("error", ""))
            )
            load.wait_for(len(load.answers) + 600)  # still serving
        finally:
            load.stop.set()
            load.thread.join(60)
            http.close()
        server.terminate()
    shutil.rmtree(work, ignore_errors=True)
    answers = load.answers
    steady = [a.seconds for a in answers if begin <= a.started < reloading]
    during = [a.seconds for a in answers if reloading <= a.started < reloaded]
    return Report(answers, swaps, refusals, p99(steady), p99(during), check(answers, expected))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, default=Path("artifacts-rollout"))
    parser.add_argument("--seed", type=int, default=7, help="the other model's training seed")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    artifacts = Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts")).resolve()
    other = args.other.resolve()
    other.mkdir(parents=True, exist_ok=True)
    make_other(other, args.seed)
    frame = pd.read_csv(data_path()).sample(5000, random_state=0).reset_index(drop=True)
    print(f"rollout: {version(artifacts)} <-> {version(other)} at c{args.concurrency}", flush=True)
    report = rollout(artifacts, other, frame, args.concurrency)
    print("\n".join(report.lines()))
    print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
