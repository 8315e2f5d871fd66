"""``python -m neuron_check`` end to end, against the named fake of the Neuron SDK.

The script is the one a user runs on an inf2 (``make neuron-check``); here its processes --
the check, its compile and timing children, the server and its workers -- import the test
seam ``tests/fakes/neuron_site`` as torch_neuronx, find a stand-in ``/dev/neuron0`` through
``FAKE_NEURON_DEV_DIR`` and a stand-in ``neuron-ls`` on PATH. That proves the script, its
report and its failure paths, not the NeuronCore: the report labels every figure FAKE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import ROOT

SITE = ROOT / "tests" / "fakes" / "neuron_site"
SIZES = "1,8,64"  # three buckets keep the run short; the default is seven


def run_check(artifacts: Path, out: Path, devices: bool = True, **fake: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)]),
        "PATH": os.pathsep.join([str(SITE / "bin"), os.environ.get("PATH", "")]),
        "HOUSING_ARTIFACTS": str(artifacts),
        **fake,
    }
    env.pop("NEURON_RT_VISIBLE_CORES", None)
    if devices:
        dev = out.parent / "dev"
        dev.mkdir(exist_ok=True)
        (dev / "neuron0").touch()  # one Inferentia2 chip: two NeuronCores
        env["FAKE_NEURON_DEV_DIR"] = str(dev)
    argv = ["--out", str(out), "--batch-sizes", SIZES, "--calls", "100", "--load-seconds", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "neuron_check", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "neuron-check.json").read_text())
    return data


def test_the_check_passes_end_to_end_and_names_the_operator_device_placement_needs(
    artifacts: Path, tmp_path: Path
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
    out = tmp_path / "check"
    # The fake compiler refuses sin, as neuronx-cc may: only --features device needs it.
    code, output = run_check(artifacts, out, FAKE_NEURONX_REFUSE="aten::sin")
    assert code == 0, output
    data = report(out)
    assert data["result"] == "pass"
    assert data["machine"]["fake"].startswith("tests/fakes/neuron_site")
    assert (data["machine"]["devices"][0].endswith("neuron0"), data["machine"]["neuroncores"]) == (
        True,
        2,
    )
    host, device = data["compile"]["host"], data["compile"]["device"]
    assert host["ok"]
    assert host["operators"] == ["aten::addmm", "aten::relu", "aten::t"]
    assert host["undocumented"] == []
    assert (device["ok"], device["failure"], device["refused"]) == (
        False,
        "refused",
        "sine (aten::sin)",
    )
    buckets = data["timing"]["buckets"]
    assert [b["batch_size"] for b in buckets] == [1, 8, 64]
    for b in buckets:
        assert 0 <= b["parity_usd"] <= data["timing"]["tolerance"]
        assert 0 < b["device_p50_us"] <= b["device_p99_us"]
        assert b["preamble_p50_us"] > 0
    server = data["server"]
    assert server["workers"] == 2  # one per NeuronCore
    points = {(r["body"], r["concurrency"]) for r in server["load"]}
    assert points == {("1 record", 1), ("1 record", 64), ("100 records", 1), ("100 records", 64)}
    for r in server["load"]:
        assert r["requests_per_s"] > 0 and r["errors"] == 0, r
    # The table says what the figures are.
    assert "*** FAKE: torch_neuronx is the test seam" in output
    assert "FAKE NeuronCore 0" in output and "FAKE server: 2 worker(s)" in output
    assert "refused: sine (aten::sin)" in output
    assert f"report: {out / 'neuron-check.json'}" in output
    assert "neuron-check: PASS" in output
    # The compiled artifact is left ready to serve.
    manifest = json.loads((out / "artifacts" / "manifest.json").read_text())
    assert (manifest["compiled"]["target"], manifest["compiled"]["features_on"]) == (
        "neuron",
        "host",
    )


@pytest.mark.parametrize(
    ("case", "fake", "failure"),
    [
        ("no device", {}, "no /dev/neuron* device. Hint: run on an inf2 instance"),
        (
            "the compiler refuses an operator of the default graph",
            {"FAKE_NEURONX_REFUSE": "aten::addmm"},
            "the Neuron compiler refused operator addmm (--features host, batch size 1)",
        ),
        (
            "parity",
            {"FAKE_NEURONX_OUTPUT_SHIFT": "5"},
            "parity: the compiled model differs from the eager model by $5.",
        ),
        (
            "a worker does not start",
            {"FAKE_NEURON_BUSY_CORES": "1"},  # a stale process holds NeuronCore 1
            "the server did not start: worker 1 failed to start",
        ),
    ],
    ids=["no-device", "refused-operator", "parity", "worker-does-not-start"],
)
def test_the_first_failure_of_the_default_path_stops_the_check_with_one_line(
    artifacts: Path, tmp_path: Path, case: str, fake: dict[str, str], failure: str
) -> None:
    out = tmp_path / "check"
    code, output = run_check(artifacts, out, devices=case != "no device", **fake)
    assert code == 1, output
    data = report(out)
    assert data["result"] == "fail"
    assert data["failure"].startswith(failure), data["failure"]
    assert f"neuron-check: FAILED: {failure}" in output
    if case == "a worker does not start":
        assert "Requested:1 Available:0" in data["failure"]  # the worker's own reason
        assert "server" not in data  # no load figures from a server that did not start
