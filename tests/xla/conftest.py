"""The XLA suite runs in .venv-xla (torch 2.9 + torch-xla, Python 3.12, PJRT_DEVICE=CPU):
`make test-xla`.

Its artifacts are trained by the default virtualenv's Python (torch 2.13, where users train)
and compiled here, under torch 2.9 -- the torch that torch-neuronx compiles with on an inf2 --
so every test in this folder also proves that a model trained under one torch compiles and
serves under the other.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.project import QUICK_EPOCHS, ROOT, run_module

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
    env = {"HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
    epochs = ["--epochs", str(QUICK_EPOCHS), "--no-progress"]
    run_module("training", *epochs, env=env, python=train_python())  # the default venv's torch
    run_module("compile", "--target", "cpu", env=env)  # this venv's torch
    return folder
