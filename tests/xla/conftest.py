"""The XLA suite runs in .venv-xla (torch 2.9 + torch-xla, Python 3.12, PJRT_DEVICE=CPU):
`make test-xla`.

Its artifacts are trained by the default virtualenv's Python (torch 2.13, where users train)
and compiled here, under torch 2.9 -- the torch that torch-neuronx compiles with on an inf2 --
so every test in this folder also proves that a model trained under one torch compiles and
serves under the other.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import QUICK_EPOCHS, ROOT, run_module

pytest.importorskip(
    "torch_xla",
    reason="torch-xla is not installed in this environment; run `make test-xla`",
    exc_type=ImportError,
)

# The default virtualenv's Python (the Makefile passes it; .venv/bin/python otherwise).
TRAIN_PYTHON_ENV = "HOUSING_TRAIN_PYTHON"


def train_python() -> str:
    python = os.environ.get(TRAIN_PYTHON_ENV) or str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).is_file():
        pytest.fail(
            f"no default virtualenv Python at {python}. Hint: run `make install` first, or set "
            f"{TRAIN_PYTHON_ENV} to a Python with the project and torch installed.",
            pytrace=False,
        )
    return python


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, housing_csv: Path) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    env = {**os.environ, "HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
    train = [train_python(), "-m", "training", "--epochs", str(QUICK_EPOCHS), "--no-progress"]
    proc = subprocess.run(train, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"training in the default virtualenv failed:\n{proc.stderr[-4000:]}")
    run_module("compile", "--target", "cpu", env=env)  # this venv's torch
    return folder
