"""Core assignment for worker processes, without hardware: devices and env are passed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.process.workers import assign_cores, format_cores, parse_cores, plan_workers, visible_cores
from app.settings import Settings

ONE_CHIP = ["/dev/neuron0"]  # inf2.xlarge / 8xlarge: one chip, two NeuronCores
SIX_CHIPS = [f"/dev/neuron{i}" for i in range(6)]  # inf2.24xlarge: 12 cores


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(artifacts=tmp_path, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "cores"),
    [("0", [0]), ("2-3", [2, 3]), ("0,2,5", [0, 2, 5]), ("0-1, 4-5", [0, 1, 4, 5])],
)
def test_parse_cores(text: str, cores: list[int]) -> None:
    assert parse_cores(text) == cores


@pytest.mark.parametrize("bad", ["", "a", "1-", "-2", "1-x"])
def test_parse_cores_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="NEURON_RT_VISIBLE_CORES"):
        parse_cores(bad)


def test_format_cores_uses_ranges_when_contiguous() -> None:
    assert format_cores([4]) == "4"
    assert format_cores([2, 3]) == "2-3"
    assert format_cores([1, 4]) == "1,4"


def test_visible_cores_from_devices_or_the_scheduler() -> None:
    assert visible_cores({}, ONE_CHIP) == [0, 1]
    assert visible_cores({}, SIX_CHIPS) == list(range(12))
    # The Neuron scheduler extension gives the pod its cores: they win over the device count.
    assert visible_cores({"NEURON_RT_VISIBLE_CORES": "6-7"}, SIX_CHIPS) == [6, 7]


def test_assign_one_core_per_worker_by_default(tmp_path: Path) -> None:
    plan = plan_workers(settings(tmp_path, device="neuron"), env={}, devices=ONE_CHIP)
    assert plan.count == 2
    assert plan.visible_cores == ("0", "1")
    big = plan_workers(settings(tmp_path, device="auto"), env={}, devices=SIX_CHIPS)
    assert big.visible_cores == tuple(str(i) for i in range(12))


def test_fewer_workers_get_contiguous_groups(tmp_path: Path) -> None:
    plan = plan_workers(settings(tmp_path, device="neuron", workers=4), env={}, devices=SIX_CHIPS)
    assert plan.visible_cores == ("0-2", "3-5", "6-8", "9-11")
    assert assign_cores([0, 1, 2, 3, 4], 2) == ("0-2", "3-4")


def test_workers_never_share_a_core(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HOUSING_WORKERS=3 but only 2 NeuronCore"):
        plan_workers(settings(tmp_path, device="neuron", workers=3), env={}, devices=ONE_CHIP)


def test_the_scheduler_cores_are_split_between_workers(tmp_path: Path) -> None:
    env = {"NEURON_RT_VISIBLE_CORES": "4-7"}
    plan = plan_workers(settings(tmp_path, device="neuron"), env=env, devices=SIX_CHIPS)
    assert plan.visible_cores == ("4", "5", "6", "7")


def test_cpu_and_xla_default_to_one_worker_without_cores(tmp_path: Path) -> None:
    for device in ("cpu", "xla"):
        plan = plan_workers(settings(tmp_path, device=device), env={}, devices=ONE_CHIP)
        assert (plan.count, plan.visible_cores) == (1, ())
    assert plan_workers(settings(tmp_path, device="auto"), env={}, devices=[]).count == 1
    assert plan_workers(settings(tmp_path, device="cpu", workers=2), env={}, devices=[]).count == 2
