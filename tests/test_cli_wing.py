"""The command line is a wing: the library never imports it, and inside it imports point down.

``llmmeter._cli`` is entered only through its face (``main`` and ``run``: the console script
and ``python -m llmmeter``). The parser root (``app``) imports the commands; they import
shared helpers, never the root or the face. Every import statement counts (module level,
inside functions, under ``TYPE_CHECKING``): they are read from the source, not from what one
run happened to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "llmmeter"
WING = "llmmeter._cli"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["llmmeter", *path.relative_to(PACKAGE).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, nodes: list[ast.stmt] | None = None) -> set[str]:
    """The llmmeter modules ``name`` imports: in ``nodes``, or anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    roots = nodes if nodes is not None else [ast.parse(path.read_text())]
    found: set[str] = set()
    for node in (node for root in roots for node in ast.walk(root)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
                elif target in MODULES:
                    found.add(target)
    found.discard(name)
    return found


def _in_wing(name: str) -> bool:
    return name == WING or name.startswith(WING + ".")


def test_nothing_in_the_library_imports_the_command_line() -> None:
    for name in MODULES:
        if not _in_wing(name) and name != "llmmeter.__main__":
            assert not {found for found in _imports(name) if _in_wing(found)}, name


def test_no_module_of_the_wing_imports_the_parser_root_or_the_face() -> None:
    for name in MODULES:
        if _in_wing(name) and name not in (WING, f"{WING}.app"):
            assert not _imports(name) & {WING, f"{WING}.app"}, name


def test_the_face_imports_the_wing_only_when_a_command_runs() -> None:
    """Importing any ``llmmeter._cli.x`` runs ``_cli/__init__`` first: an import of the wing
    at its module level would point back up."""
    tree = ast.parse(MODULES[WING].read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not {found for found in _imports(WING, top_level) if _in_wing(found)}
    assert _imports(WING) == {f"{WING}.app"}


def test_the_wing_has_no_import_loop() -> None:
    wing = {name: {m for m in _imports(name) if _in_wing(m)} for name in MODULES if _in_wing(name)}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for imported in wing[name]:
                visit(imported, (*path, name))
            done.add(name)

    for name in wing:
        visit(name, ())
