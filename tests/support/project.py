"""The checkout, the data set and the project's CLIs run as users run them (subprocesses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from modelspec.manifest import CHECKPOINT_FILE
from training.data import EMBEDDED_DATA

ROOT = Path(__file__).resolve().parents[2]
# The project's Python packages (mypy's list in pyproject.toml), top-level folders of ROOT.
PACKAGES = (
    "app",
    "modelspec",
    "training",
    "compile",
    "offline",
    "reliability",
    "benchmarks",
    "neuron_check",
)
# A short training run: enough for a meaningful model, a few seconds on 2 cores.
QUICK_EPOCHS = 4


def data_path() -> Path:
    """``HOUSING_DATA`` if set, else the project's embedded copy; fails the test if absent."""
    path = Path(os.environ.get("HOUSING_DATA") or EMBEDDED_DATA)
    if not path.is_file():
        pytest.fail(
            f"data set not found at {path}. Hint: set HOUSING_DATA to the path of housing.csv, "
            "or unset it for the copy embedded in the project.",
            pytrace=False,
        )
    return path


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, python: str = sys.executable
) -> str:
    """``python -m module args`` in a subprocess (this interpreter unless ``python`` names
    another); fails the test with its output if it fails."""
    proc = subprocess.run(
        [python, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"python -m {module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def another_model(artifacts: Path, folder: Path) -> None:
    """Into ``folder``: ``artifacts``' checkpoint with every bias moved by 0.05, compiled by
    ``python -m compile`` (its own version, reference rows and eager model)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in artifacts.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    for name, tensor in checkpoint["state_dict"].items():
        if name.endswith(".bias"):
            tensor += 0.05
    torch.save(checkpoint, folder / CHECKPOINT_FILE)
    run_module("compile", "--target", "cpu", env={"HOUSING_ARTIFACTS": str(folder)})


@dataclass(frozen=True)
class DefaultRun:
    """The default model, trained as ``make run`` trains it (tests/e2e/conftest.py)."""

    folder: Path
    training_output: str  # what python -m training printed


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder ``name`` filled by ``build(folder)`` once per test run, also when pytest-xdist
    runs the tests in several processes: the first to get here builds, the others wait for it
    (a file lock) and take its folder."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by its workers
    folder = root / name
    done = root / f"{name}.built"  # beside it: the folder holds what build made, only
    with FileLock(f"{folder}.lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
