"""The default model, trained once per session as ``make run`` trains it: ``python -m training``
with every default (60 epochs, the embedded data set unless ``HOUSING_DATA`` says otherwise),
then ``python -m compile --target cpu``. Slow (a full training): the accuracy bar and the documented
examples use it; other tests use the quick ``artifacts`` of tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import DefaultRun, built_once, run_module

TRAINING_OUTPUT = "default-training.txt"  # beside the folder: what python -m training printed


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, housing_csv: Path) -> DefaultRun:
    """Trained once per run, also when several pytest-xdist workers ask for it."""

    def build(folder: Path) -> None:
        env = {"HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
        out = run_module("training", "--no-progress", env=env)
        run_module("compile", "--target", "cpu", env=env)
        folder.with_name(TRAINING_OUTPUT).write_text(out)

    folder = built_once(tmp_path_factory, "default-artifacts", build)
    return DefaultRun(folder, folder.with_name(TRAINING_OUTPUT).read_text())


@pytest.fixture(scope="session")
def default_artifacts(default_run: DefaultRun) -> Path:
    """The default model's artifacts folder (model.pt, model_neuron.pt, manifest.json, report)."""
    return default_run.folder
