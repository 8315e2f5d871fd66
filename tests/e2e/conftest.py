"""The default model, trained once per session as ``make run`` trains it: ``python -m training``
with every default (60 epochs, the embedded data set unless ``HOUSING_DATA`` says otherwise),
then ``python -m compile --target cpu``. Slow (20-40 s): the accuracy bar and the documented
examples use it; other tests use the quick ``artifacts`` of tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_module


@dataclass(frozen=True)
class DefaultRun:
    folder: Path
    training_output: str  # what python -m training printed


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, housing_csv: Path) -> DefaultRun:
    folder = tmp_path_factory.mktemp("default-artifacts")
    env = {"HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
    out = run_module("training", "--no-progress", env=env)
    run_module("compile", "--target", "cpu", env=env)
    return DefaultRun(folder, out)


@pytest.fixture(scope="session")
def default_artifacts(default_run: DefaultRun) -> Path:
    """The default model's artifacts folder (model.pt, model_neuron.pt, manifest.json, report)."""
    return default_run.folder
