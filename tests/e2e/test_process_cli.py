"""``python -m app`` answers like the other commands: usage, every setting, and errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.settings import Settings
from tests.support.project import ROOT


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_prints_usage_and_every_setting_from_the_settings_model() -> None:
    proc = run_app("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m app [-h] [{serve}]")
    for name, field in Settings.model_fields.items():
        assert f"HOUSING_{name.upper()} (default: " in proc.stdout, name
        assert field.description is not None
        first_words = " ".join(field.description.split()[:4])
        assert first_words in " ".join(proc.stdout.split()), name
    assert "HOUSING_PORT (default: 8080)" in proc.stdout
    assert "Uvicorn running" not in proc.stdout + proc.stderr  # no server was started


@pytest.mark.parametrize("args", [["--port", "9000"], ["nonsense"], ["serve", "extra"]])
def test_an_unknown_argument_is_an_error_with_usage(args: list[str]) -> None:
    proc = run_app(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: python -m app")
    assert "python -m app: error:" in proc.stderr
