"""docs/configuration.md is what ``app.process.settings_page`` renders from the code, and it says
what ``python -m app --help`` says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.process import settings_page
from app.process.cli import parse_args
from app.process.environment import OTHER_GROUPS, SERVE_GROUPS
from app.settings import Settings
from tests.support.project import ROOT


def page_rows() -> dict[str, tuple[str, str]]:
    """``variable -> (default, meaning)`` of every table row of the committed page."""
    rows = {}
    for line in settings_page.PAGE.read_text().splitlines():
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        if len(cells) == 3 and cells[0].strip().startswith("`"):
            for name in re.findall(r"`([A-Z_]+)`", cells[0]):
                rows[name] = (cells[1].strip().strip("`"), settings_page.uncell(cells[2].strip()))
    return rows


def help_entries(capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    """``variable -> (default, meaning)`` of ``python -m app --help``, wrapped lines joined."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in capsys.readouterr().out.splitlines():
        if match := re.fullmatch(r"  (HOUSING_[A-Z_]+) \(default: (.*)\)", line):
            name = match.group(1)
            entries[name] = (match.group(2), [])
        elif name and line.startswith(" " * 6):
            entries[name][1].append(line.strip())
    return {k: (default, " ".join(words)) for k, (default, words) in entries.items()}


def test_the_committed_page_is_what_the_code_renders() -> None:
    assert settings_page.PAGE.read_text() == settings_page.render(), (
        "docs/configuration.md is stale: run make docs"
    )


def test_every_setting_is_on_the_page_with_its_default_and_description() -> None:
    rows = page_rows()
    for name, field in Settings.model_fields.items():
        variable = settings_page.env_name(name)
        assert variable in rows, variable
        assert rows[variable] == (settings_page.default_text(field), field.description)


def test_help_and_the_page_say_the_same_for_every_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, helped = page_rows(), help_entries(capsys)
    assert set(helped) == {settings_page.env_name(n) for n in Settings.model_fields}
    for variable, (default, meaning) in helped.items():
        assert rows[variable][0] == default, variable
        # --help wraps the same text at spaces; the page keeps it on one line.
        assert " ".join(rows[variable][1].split()) == meaning, variable


def test_every_other_variable_is_on_the_page_and_read_by_its_reader() -> None:
    rows = page_rows()
    for group in (*SERVE_GROUPS, *OTHER_GROUPS):
        for variable in group.variables:
            source = (ROOT / variable.reader).read_text()
            for name in variable.names:
                assert name in rows, name
                assert rows[name][1] == variable.meaning, name
                # The name itself, or the constant the reader holds it in, is in the reader.
                assert name in source, f"{variable.reader} does not read {name}"


def test_a_cell_escapes_what_markdown_would_read_as_a_table_or_a_tag() -> None:
    text = "'Bearer <key>' or `<key>`, a|b"
    assert settings_page.cell(text) == "'Bearer &lt;key&gt;' or `<key>`, a\\|b"
    assert settings_page.uncell(settings_page.cell(text)) == text


def test_check_exits_1_with_the_fix_when_the_page_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    monkeypatch.setattr(settings_page, "PAGE", page)
    monkeypatch.setattr(settings_page, "ROOT", page.parent)
    page.write_text("# Configuration\n")
    assert settings_page.main(["--check"]) == 1
    assert "run `make docs`" in capsys.readouterr().err
    assert settings_page.main([]) == 0
    assert settings_page.main(["--check"]) == 0
    assert page.read_text() == settings_page.render()
