"""training.console: text and a progress bar on a terminal, JSON lines anywhere else, so no
progress-bar frame reaches a log file."""

from __future__ import annotations

import io

import orjson
import pytest

from training.__main__ import main
from training.console import Console, resolve_format


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOUSING_LOG_FORMAT", raising=False)
    assert resolve_format(None, Terminal()) == "text"
    assert resolve_format(None, io.StringIO()) == "json"
    monkeypatch.setenv("HOUSING_LOG_FORMAT", "text")
    assert resolve_format(None, io.StringIO()) == "text"
    assert Console(stream=io.StringIO()).format == "text"  # no flag: the variable decides
    assert resolve_format("json", Terminal()) == "json"
    monkeypatch.setenv("HOUSING_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="HOUSING_LOG_FORMAT"):
        resolve_format(None, Terminal())


def test_a_log_gets_one_json_object_per_line_and_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOUSING_LOG_FORMAT", raising=False)
    log = io.StringIO()
    console = Console(stream=log)
    for epoch in console.steps(range(1, 4), "training"):
        console.status(best_epoch=epoch)
        console.line(f"epoch {epoch}", epoch=epoch, val_rmse=1.5)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    entries = [orjson.loads(line) for line in lines]
    assert [e["epoch"] for e in entries] == [1, 2, 3]
    assert {e["logger"] for e in entries} == {"training"}
    assert entries[0]["message"] == "epoch 1" and entries[0]["level"] == "info"
    assert entries[0]["time"].endswith("Z")


def test_a_terminal_gets_text_lines_and_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOUSING_LOG_FORMAT", raising=False)
    screen, errors = Terminal(), Terminal()
    console = Console(stream=screen, bar_stream=errors)
    for epoch in console.steps(range(1, 3), "training"):
        console.line(f"epoch {epoch}")
    assert "epoch 1\n" in screen.getvalue() and "epoch 2\n" in screen.getvalue()
    assert "training: 100%" in errors.getvalue()
    quiet_errors = Terminal()
    quiet = Console(stream=Terminal(), progress=False, bar_stream=quiet_errors)
    assert list(quiet.steps(range(2), "training")) == [0, 1]
    assert quiet_errors.getvalue() == ""


def test_no_bar_when_standard_error_goes_to_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # python -m training 2>train.log at a terminal: text lines, and no bar frame in the log.
    monkeypatch.delenv("HOUSING_LOG_FORMAT", raising=False)
    screen, log = Terminal(), io.StringIO()
    console = Console(stream=screen, bar_stream=log)
    for epoch in console.steps(range(1, 3), "training"):
        console.line(f"epoch {epoch}")
    assert console.format == "text" and "epoch 2\n" in screen.getvalue()
    assert log.getvalue() == ""


def test_the_environment_takes_the_servers_values_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOUSING_LOG_FORMAT", "auto")  # the server would refuse it
    with pytest.raises(ValueError, match="is not one of text, json; unset it"):
        resolve_format(None, Terminal())
    assert resolve_format("auto", io.StringIO()) == "json"  # the flag may say auto


def test_the_command_line_refuses_a_bad_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOUSING_LOG_FORMAT", "yaml")
    assert main(["--epochs", "1"]) == 2
    assert "HOUSING_LOG_FORMAT" in capsys.readouterr().err
