"""The tests' own layout, as ``tests/support/__init__.py`` states it: test modules named after
the package they test, helpers shared only through ``tests.support`` (or the seams in
``tests.fakes``), and no private name of the project imported by a test."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.project import PACKAGES, ROOT

TESTS = ROOT / "tests"
TEST_FOLDERS = ("unit", "integration", "e2e", "xla")
# What a test module's name starts with: the code it tests (tests/support/__init__.py).
NAMES = (
    *PACKAGES,
    "core",
    "http",
    "grpc",
    "codecs",
    "observe",
    "process",
    "backends",
    "deploy",
    "docs",
    "tests",
)
PROJECT = (*PACKAGES, "tests")
SHARED = ("tests.support", "tests.fakes")
TEST_NAME = re.compile(rf"test_({'|'.join(NAMES)})(_[a-z0-9_]+)?\.py")


def python_files() -> Iterator[Path]:
    yield from sorted(TESTS.rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """Every import of ``path`` (also inside functions): line, module, names taken from it."""
    for node in ast.walk(ast.parse(path.read_text(), rel(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def is_module(dotted: str) -> bool:
    path = ROOT / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_test_folders_hold_test_modules_named_after_the_package_they_test() -> None:
    wrong = []
    for folder in TEST_FOLDERS:
        for path in sorted((TESTS / folder).rglob("*.py")):
            if path.name in {"__init__.py", "conftest.py"}:
                continue
            if path.parent != TESTS / folder or not TEST_NAME.fullmatch(path.name):
                wrong.append(rel(path))
    assert wrong == [], (
        f"{wrong}: a test module is tests/<{'|'.join(TEST_FOLDERS)}>/test_<package>_<topic>.py, "
        f"<package> one of {', '.join(NAMES)}; a helper goes to tests/support "
        "(tests/support/__init__.py says the rule)"
    )


def shared_only(path: Path) -> list[str]:
    """The imports of ``path`` of a tests module other than tests.support and tests.fakes."""
    return [
        f"{rel(path)}:{line} imports {module}"
        for line, module, _ in imports(path)
        if (module == "tests" or module.startswith("tests.")) and not module.startswith(SHARED)
    ]


def private_names(path: Path) -> list[str]:
    """Names with a leading underscore that ``path`` takes from the project's modules:
    imported (``from m import _x``), or reached through an imported module (``m._x``)."""
    wrong = []
    modules: set[str] = set()  # local names bound to a module of the project
    for line, module, names in imports(path):
        parts = module.split(".")
        if parts[0] not in PROJECT:
            continue
        if any(p.startswith("_") and not p.startswith("__") for p in parts):
            wrong.append(f"{rel(path)}:{line} imports {module}")
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                wrong.append(f"{rel(path)}:{line} imports {name} from {module}")
            elif is_module(f"{module}.{name}"):
                modules.add(name)
        if not names:
            modules.add(parts[0])
    for node in ast.walk(ast.parse(path.read_text(), rel(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            wrong.append(f"{rel(path)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return wrong


def test_tests_import_no_test_module_and_no_conftest() -> None:
    wrong = [problem for path in python_files() for problem in shared_only(path)]
    assert wrong == [], (
        f"{wrong}: what test modules share goes to tests/support (or tests/fakes for a seam); "
        "fixtures go to a conftest.py, which pytest finds without an import"
    )


def test_tests_import_no_private_name_of_the_project() -> None:
    wrong = [problem for path in python_files() for problem in private_names(path)]
    assert wrong == [], (
        f"{wrong}: a name with a leading underscore is its module's own; make what tests need "
        "public (and documented) in its module"
    )


@pytest.mark.parametrize("path", sorted((TESTS / "support").glob("*.py")), ids=lambda p: p.name)
def test_each_support_module_says_what_it_holds_and_defines_no_fixture(path: Path) -> None:
    tree = ast.parse(path.read_text(), rel(path))
    assert ast.get_docstring(tree), f"{rel(path)} needs a docstring saying what it holds"
    fixtures = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    ]
    assert fixtures == [], f"{rel(path)} defines fixtures {fixtures}: they go to a conftest.py"


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """The checks above on a module that breaks each rule (and one that keeps them)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from tests.e2e.test_grpc import inputs_of\n"
        "from tests.conftest import ROOT\n"
        "from reliability.workload import _read_many\n"
        "from reliability import loadcheck\n"
        "import reliability.server\n"
        "def f() -> None:\n"
        "    loadcheck._check, reliability._x, loadcheck.__name__\n"
    )
    found = [p.split(" ", 1)[1] for p in shared_only(bad) + private_names(bad)]
    assert found == [
        "imports tests.e2e.test_grpc",
        "imports tests.conftest",
        "imports _read_many from reliability.workload",
        "uses loadcheck._check",
        "uses reliability._x",
    ]
    good = tmp_path / "good.py"
    good.write_text(
        "from tests.support.records import records\n"
        "from tests.fakes.torch_neuronx import FakeTorchNeuronx\n"
        "from reliability.workload import read_many\n"
        "from modelspec import features\n"
        "x = object()\n"
        "x._private, features.RAW_COLUMNS\n"
    )
    assert shared_only(good) + private_names(good) == []
    for name in ("test_grpc.py", "test_core_batching.py", "test_neuron_check.py"):
        assert TEST_NAME.fullmatch(name), name
    for name in ("test_batching.py", "test_aws.py", "test_doc_examples.py", "server.py"):
        assert not TEST_NAME.fullmatch(name), name
