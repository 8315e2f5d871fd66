"""The examples of the docs and their shown outputs, read from Markdown, and the rules that
compare an answer with a shown output (tests/e2e/test_docs_examples.py says what they are and
runs them)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SHELLS = {"bash", "sh", "shell", "console"}
OUTPUTS = {"", "json", "text", "txt", "csv", "jsonl"}
CALLS = re.compile(
    r"(?:localhost|127\.0\.0\.1):808[01]\b|python -m app\.(?:score|probe|drift)\b|\bgrpcurl\b"
)
FENCE = re.compile(r"^ {0,3}(`{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(not run|env|new model)\s*(?::\s*(.*?))?\s*-->\s*$")
VERSION = re.compile(r"[0-9a-f]{12}")
# A model version, or a number that is not part of a word.
TOKEN = re.compile(r"\b[0-9a-f]{12}\b|(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
RELATIVE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    heading: str
    command: str
    output: str | None
    output_lang: str
    skip: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    new_model: bool = False

    @property
    def place(self) -> str:
        return f"{self.file}:{self.line} ({self.heading})"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, from 1
    end: int  # of the closing fence
    lang: str
    body: str
    markers: tuple[str, ...]  # the marker comments right before it
    heading: str  # the last heading before it


def blocks(text: str) -> Iterator[Block]:
    lines = text.splitlines()
    heading, markers, i = "", list[str](), 0
    while i < len(lines):
        line = lines[i]
        if match := FENCE.match(line):
            fence, lang = match.groups()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), i)
            cut = len(line) - len(line.lstrip())  # a fence indented in a list
            body = "\n".join(x[cut:] if not x[:cut].strip() else x for x in lines[i + 1 : end])
            yield Block(i + 1, end + 1, lang.lower(), body, tuple(markers), heading)
            markers, i = [], max(end, i) + 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if MARKER.match(line):
            markers.append(line)
        elif line.strip():
            markers = []
        i += 1


def examples_in(text: str, file: str) -> list[Example]:
    """The examples of one Markdown file's ``text``."""
    lines = text.splitlines()
    found = list(blocks(text))
    examples = []
    for k, block in enumerate(found):
        after = found[k + 1] if k + 1 < len(found) else None
        if block.lang not in SHELLS or not CALLS.search(block.body):
            continue
        command, shown, shown_lang = block.body, None, ""
        if block.lang == "console":  # $ commands, and their output
            body = block.body.splitlines()
            command = "\n".join(x[1:].lstrip() for x in body if x.startswith("$"))
            shown = "\n".join(x for x in body if not x.startswith("$"))
            shown_lang = "text"
        elif (
            after is not None
            and after.lang in OUTPUTS
            and not "".join(lines[block.end : after.line - 1]).strip()
        ):
            shown, shown_lang = after.body, after.lang
        skip, env, new_model = None, list[tuple[str, str]](), False
        for marker in block.markers:
            match = MARKER.match(marker)
            assert match is not None
            kind, value = match.group(1), match.group(2) or ""
            if kind == "not run":
                skip = f"not run: {value}"
            elif kind == "env":
                env += [(p.partition("=")[0], p.partition("=")[2]) for p in value.split()]
            else:
                new_model = True
        examples.append(
            Example(
                file=file,
                line=block.line,
                heading=block.heading,
                command=command,
                output=shown,
                output_lang=shown_lang,
                skip=skip,
                env=tuple(sorted(env)),
                new_model=new_model,
            )
        )
    return examples


def numbers_match(shown: float, actual: float, exact: bool) -> bool:
    if exact:
        return shown == actual
    return math.isclose(shown, actual, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9)


def compare_json(shown: Any, actual: Any, exact: bool, where: str = "$") -> list[str]:
    """The differences between a shown JSON value and an answered one."""
    if isinstance(shown, dict) and isinstance(actual, dict):
        problems = []
        if set(shown) != set(actual):
            problems.append(f"{where}: keys shown {sorted(shown)}, answered {sorted(actual)}")
        for key in shown.keys() & actual.keys():
            if key == "seconds" and isinstance(actual[key], int | float):
                continue  # a duration: any number
            problems += compare_json(shown[key], actual[key], exact, f"{where}.{key}")
        return problems
    if isinstance(shown, list) and isinstance(actual, list):
        if len(shown) != len(actual):
            return [f"{where}: {len(shown)} items shown, {len(actual)} answered"]
        return [
            problem
            for i, (s, a) in enumerate(zip(shown, actual, strict=True))
            for problem in compare_json(s, a, exact, f"{where}[{i}]")
        ]
    if isinstance(shown, bool) or isinstance(actual, bool) or shown is None or actual is None:
        same = shown is actual
    elif isinstance(shown, int | float) and isinstance(actual, int | float):
        same = numbers_match(shown, actual, exact)
    elif isinstance(shown, str) and isinstance(actual, str) and VERSION.fullmatch(shown):
        same = VERSION.fullmatch(actual) is not None  # a model version: any
    else:
        same = shown == actual
    return [] if same else [f"{where}: shown {shown!r}, answered {actual!r}"]


def compare_text(shown: str, actual: str, exact: bool) -> list[str]:
    """Line by line: the words exactly, numbers and model versions as in ``compare_json``."""
    shown_lines, actual_lines = shown.strip().splitlines(), actual.strip().splitlines()
    if len(shown_lines) != len(actual_lines):
        return [f"{len(shown_lines)} lines shown, {len(actual_lines)} answered"]
    problems = []
    for n, (s, a) in enumerate(zip(shown_lines, actual_lines, strict=True), 1):
        if TOKEN.sub("#", s).rstrip() != TOKEN.sub("#", a).rstrip():
            problems.append(f"line {n}: shown {s!r}, answered {a!r}")
            continue
        for ts, ta in zip(TOKEN.findall(s), TOKEN.findall(a), strict=True):
            if VERSION.fullmatch(ts):
                ok = VERSION.fullmatch(ta) is not None
            else:
                ok = not VERSION.fullmatch(ta) and numbers_match(float(ts), float(ta), exact)
            if not ok:
                problems.append(f"line {n}: shown {ts}, answered {ta}")
    return problems


def json_values(text: str) -> list[Any] | None:
    """The JSON value of ``text``, or of each of its lines; None when it is not JSON."""
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        return None


def compare(shown: str, actual: str, lang: str, exact: bool) -> list[str]:
    """The differences between a shown output and an answer: JSON as JSON, else as text."""
    expected = json_values(shown)
    if lang != "json" and not expected:
        return compare_text(shown, actual, exact)
    if expected is None:
        return ["the shown output is marked json but is not JSON"]
    answered = json_values(actual)
    if answered is None:
        return ["the shown output is JSON, the answer is not"]
    if len(expected) == len(answered) == 1:
        return compare_json(expected[0], answered[0], exact)
    return compare_json(expected, answered, exact)
