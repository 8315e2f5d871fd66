"""The house's rooms: which package may import which (every import, also inside functions).

From the bottom up: ``app.settings``, ``app.errors`` and ``app.identity`` import nothing of the
app; ``app.core`` (runtime, batching, the inference path), ``app.backends``, ``app.codecs`` and
``app.observe`` import no door and no process code; the doors (``app.http``, ``app.grpc``)
never import each other; only the composition root (``app.compose``) and the process code
(``app.process``) see both doors; the offline tools (``offline``) import no door and no process.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOORS = ("app.http", "app.grpc")
ABOVE_CORE = (*DOORS, "app.process", "app.compose")
# package -> prefixes it must not import
RULES: dict[str, tuple[str, ...]] = {
    "app.settings": ("app",),
    "app.errors": ("app",),
    "app.identity": ("app",),
    "app.core": ABOVE_CORE,
    "app.backends": (*ABOVE_CORE, "app.codecs"),
    "app.codecs": ABOVE_CORE,
    "app.observe": ABOVE_CORE,
    "app.http": ("app.grpc", "app.process", "app.compose"),
    "app.grpc": ("app.http", "app.process", "app.compose"),
    "offline": ABOVE_CORE,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, anywhere in it (absolute
    names; an imported name may be a module too, so it is listed as one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def sources() -> list[Path]:
    return sorted(p for folder in ("app", "offline") for p in (ROOT / folder).rglob("*.py"))


def test_every_module_is_under_a_rule_or_is_a_known_top_level_one() -> None:
    tops = {"app", "app.__main__", "app.compose", "app.score", "app.drift", "app.probe"}
    unruled = [
        name
        for name in map(module_name, sources())
        if name not in tops
        and not within(name, "app.process")
        and not any(within(name, package) for package in RULES)
    ]
    assert unruled == [], f"modules no import rule covers (add them to RULES): {unruled}"


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    broken = []
    for path in sources():
        name = module_name(path)
        if not within(name, package):
            continue
        for imported in imports(path.read_text(), name.rsplit(".", 1)[0]):
            for banned in RULES[package]:
                if within(imported, banned) and not within(imported, package):
                    broken.append(f"{name} imports {imported}")
    assert broken == [], "\n".join(broken)


def test_the_checker_finds_imports_inside_functions_and_relative_ones() -> None:
    source = "def f():\n    from app.http.guard import Guard\n    from ..http import oip\n"
    found = imports(source, "app.grpc")
    assert {"app.http.guard", "app.http.oip"} <= found
    assert any(within(name, "app.http") for name in found)
