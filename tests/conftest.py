"""Shared fixtures: the real data set, and real artifacts trained and compiled by the CLIs.

``HOUSING_DATA`` points at the data (default: the project's embedded copy,
training/dataset/housing.csv.gz). Tests are auto-marked by folder: unit, integration, e2e, xla.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from modelspec.manifest import CHECKPOINT_FILE
from training.data import EMBEDDED_DATA

ROOT = Path(__file__).resolve().parent.parent
# A short training run: enough for a meaningful model, a few seconds on 2 cores.
QUICK_EPOCHS = 4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in {"unit", "integration", "e2e", "xla"}:
            item.add_marker(getattr(pytest.mark, folder))


def data_path() -> Path:
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


@pytest.fixture(scope="session")
def housing_csv() -> Path:
    return data_path()


@pytest.fixture(scope="session")
def housing_frame(housing_csv: Path) -> pd.DataFrame:
    return pd.read_csv(housing_csv)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, housing_csv: Path) -> Path:
    """Artifacts made as a user makes them: ``python -m training``, then ``python -m compile``."""
    folder = tmp_path_factory.mktemp("artifacts")
    env = {"HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
    run_module("training", "--epochs", str(QUICK_EPOCHS), "--no-progress", env=env)
    run_module("compile", "--target", "cpu", env=env)
    return folder


@pytest.fixture(scope="session")
def other_artifacts(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Path:
    """A second model for reloads: ``artifacts``' checkpoint with every bias moved by 0.05,
    compiled by ``python -m compile`` (its own version, reference rows and eager model)."""
    folder = tmp_path_factory.mktemp("other-artifacts")
    for path in artifacts.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    for name, tensor in checkpoint["state_dict"].items():
        if name.endswith(".bias"):
            tensor += 0.05
    torch.save(checkpoint, folder / CHECKPOINT_FILE)
    run_module("compile", "--target", "cpu", env={"HOUSING_ARTIFACTS": str(folder)})
    return folder
