"""Fixtures for every folder: the real data set, and real artifacts trained and compiled by the
CLIs once per session.

``HOUSING_DATA`` points at the data (default: the project's embedded copy,
training/dataset/housing.csv.gz). Tests are auto-marked by folder: unit, integration, e2e, xla.
Helpers that tests share are in ``tests/support`` (its docstring says the layout).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.project import (
    QUICK_EPOCHS,
    another_model,
    built_once,
    data_path,
    run_module,
)

MARKED_FOLDERS = ("unit", "integration", "e2e", "xla")
# Session fixtures that build something slow (a training run), and the order of the folders
# after them: the processes of the e2e tests are the longest, the unit tests the shortest.
BUILDS = ("artifacts", "default_run")
FOLDER_ORDER = ("e2e", "xla", "integration", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in MARKED_FOLDERS:
            item.add_marker(getattr(pytest.mark, folder))
    items[:] = in_run_order(items)


def in_run_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """Whole files, in an order that keeps two pytest-xdist workers (``make test``) busy: first
    the first file that needs each build (so the builds start at once, side by side), then the
    files that need none (for a worker while the other builds), then the rest, longest first
    by folder, so that short files fill the end. The order of a file's own tests is kept."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(str(item.path), []).append(item)

    def builds(tests: list[pytest.Item]) -> set[str]:
        return {name for t in tests for name in t.fixturenames if name in BUILDS}

    first = {}
    for path, tests in files.items():
        for name in builds(tests):
            first.setdefault(name, path)
    starters = set(first.values())

    def rank(path: str) -> tuple[int, int]:
        folder = Path(path).parent.name
        position = FOLDER_ORDER.index(folder) if folder in FOLDER_ORDER else len(FOLDER_ORDER)
        if path in starters:
            return 0, 0
        return (1 if not builds(files[path]) else 2), position

    ordered = sorted(files, key=rank)  # stable: collection order within a rank
    return [item for path in ordered for item in files[path]]


@pytest.fixture(scope="session")
def housing_csv() -> Path:
    return data_path()


@pytest.fixture(scope="session")
def housing_frame(housing_csv: Path) -> pd.DataFrame:
    return pd.read_csv(housing_csv)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, housing_csv: Path) -> Path:
    """Artifacts made as a user makes them: ``python -m training``, then ``python -m compile``."""

    def build(folder: Path) -> None:
        env = {"HOUSING_DATA": str(housing_csv), "HOUSING_ARTIFACTS": str(folder)}
        run_module("training", "--epochs", str(QUICK_EPOCHS), "--no-progress", env=env)
        run_module("compile", "--target", "cpu", env=env)

    return built_once(tmp_path_factory, "artifacts", build)


@pytest.fixture(scope="session")
def other_artifacts(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Path:
    """A second model for reloads: ``artifacts``' checkpoint with every bias moved by 0.05,
    compiled by ``python -m compile`` (its own version, reference rows and eager model)."""

    return built_once(
        tmp_path_factory, "other-artifacts", lambda folder: another_model(artifacts, folder)
    )
