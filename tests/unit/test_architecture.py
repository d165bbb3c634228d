"""The house rules of ``src/llmmeter``, computed from the source so that they stay true.

- No import loop, counting every import: module level, inside functions, and under
  ``if TYPE_CHECKING:`` (a loop there is still two modules that cannot be read apart).
- No private name crosses a module wall: a name another module uses is public where it lives.
- The command line is a wing: nothing in the library imports it (but ``__main__``, the entry
  of ``python -m llmmeter``); its face (``_cli/__init__``) imports the parser root only when a
  command runs, and commands import shared helpers downward, never the root or the face.
- ``docs/architecture.md`` names every module, so the map a newcomer reads is never stale.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "llmmeter"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
WING = "llmmeter._cli"
WING_ROOTS = frozenset({WING, f"{WING}.app"})
ENTRY = "llmmeter.__main__"


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: set[str] = field(default_factory=set)
    private_uses: set[tuple[str, str]] = field(default_factory=set)
    """(module, name): a private name of another of our modules that this one uses."""


def _modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


def _absolute(module: Module, level: int, name: str | None) -> str:
    """What a relative import names, seen from ``module``."""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _read(modules: dict[str, Module]) -> dict[str, Module]:
    """Fill each module's imports (every ``import`` statement, wherever it sits) and the
    private names of our other modules it uses (imported, or read as ``module._name``)."""
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        module.imports.add(alias.name)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    source = _absolute(module, node.level, node.module)
                elif node.module is not None and node.module.split(".")[0] == "llmmeter":
                    source = node.module
                else:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        module.imports.add(submodule)
                        aliases[alias.asname or alias.name] = submodule
                        continue
                    if source in modules:
                        module.imports.add(source)
                    if _is_private(alias.name):
                        module.private_uses.add((source, alias.name))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
            ):
                module.private_uses.add((aliases[node.value.id], node.attr))
        module.imports.discard(module.name)
    return modules


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return _read(_modules())


def _loops(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and any module
    that imports itself through a chain: every import loop, each reported once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for other in sorted(modules[name].imports):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in on_stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == name:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return loops


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Keeps the loop check honest: function-level and TYPE_CHECKING imports are edges."""
    source = tmp_path / "llmmeter"
    (source / "sub").mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "_a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ._b import B\n"
        "def f():\n    from . import _c\n    return _c._hidden\n"
    )
    (source / "_b.py").write_text("import llmmeter._a\n")
    (source / "_c.py").write_text("_hidden = 1\n")
    (source / "sub" / "__init__.py").write_text("")
    (source / "sub" / "x.py").write_text("from .. import _a\nfrom .._b import _secret\n")
    found = {}
    for path in sorted(source.rglob("*.py")):
        parts = list(path.relative_to(tmp_path).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Module(name, path, is_package)
    read = _read(found)
    assert read["llmmeter._a"].imports == {"llmmeter._b", "llmmeter._c"}
    assert read["llmmeter._a"].private_uses == {("llmmeter._c", "_hidden")}
    assert read["llmmeter.sub.x"].imports == {"llmmeter._a", "llmmeter._b"}
    assert read["llmmeter.sub.x"].private_uses == {("llmmeter._b", "_secret")}
    assert _loops(read) == [["llmmeter._a", "llmmeter._b"]]


def test_no_import_loop_anywhere(modules: dict[str, Module]) -> None:
    assert _loops(modules) == []


def test_no_private_name_crosses_a_module_wall(modules: dict[str, Module]) -> None:
    crossing = sorted(
        f"{module.name} uses {source}.{name}"
        for module in modules.values()
        for source, name in module.private_uses
        if source != module.name
    )
    assert crossing == []


def test_nothing_in_the_library_imports_the_command_line(modules: dict[str, Module]) -> None:
    assert WING in modules, "the command line lives in src/llmmeter/_cli/"
    library = [m for m in modules.values() if not _in_wing(m.name) and m.name != ENTRY]
    assert library
    reaching = sorted(
        f"{m.name} imports {other}" for m in library for other in m.imports if _in_wing(other)
    )
    assert reaching == []


def test_the_wings_commands_import_downward_never_the_root(modules: dict[str, Module]) -> None:
    upward = sorted(
        f"{m.name} imports {other}"
        for m in modules.values()
        if _in_wing(m.name) and m.name not in WING_ROOTS
        for other in m.imports
        if other in WING_ROOTS
    )
    assert upward == []


def test_the_face_imports_the_wing_only_when_a_command_runs(modules: dict[str, Module]) -> None:
    """Importing any ``llmmeter._cli.x`` runs ``_cli/__init__`` first: an import of the wing
    at the face's module level would point back up from every command."""
    face = modules[WING]
    tree = ast.parse(face.path.read_text(encoding="utf-8"))
    at_top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    named = [
        n.module or "" if isinstance(n, ast.ImportFrom) and not n.level else WING
        for n in at_top
        if isinstance(n, ast.ImportFrom)
    ] + [alias.name for n in at_top if isinstance(n, ast.Import) for alias in n.names]
    assert not [name for name in named if _in_wing(name)]
    assert {other for other in face.imports if _in_wing(other)} == {f"{WING}.app"}


def _in_wing(name: str) -> bool:
    return name == WING or name.startswith(f"{WING}.")


def _documented_names() -> Iterator[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    for module in _modules().values():
        relative = module.path.relative_to(PACKAGE).as_posix()
        if relative not in text:
            yield relative


def test_the_architecture_page_names_every_module() -> None:
    missing = list(_documented_names())
    assert missing == [], f"docs/architecture.md does not name: {missing}"
