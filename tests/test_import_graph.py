"""`core`, and the command line in `tui` (its commands and top-level modules), have no
import circle: not at module level, and not inside functions.

The graph is built from the source with ``ast``: every ``import core.x`` and
``from core.x import y`` in a module of ``core``, at module level *and* inside
functions (a function-level import only postpones a circle to run time; it is
still two modules that need each other). Imports under ``if TYPE_CHECKING:``
are left out: they never run, and exist for type hints only. ``from
core.pkg import module`` is an edge to that module, not to the package's
``__init__`` (which Python has already begun, and which may re-export it).
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
TUI = CORE.parent / "tui"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``core`` that ``path`` imports, wherever in it the import is."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from core.delivery import store` needs the module `store`
                # (not the package's __init__); `from core.clock import Clock`
                # needs `core.clock`.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    edges = set()
    for name in found:
        # `import core.a.b` needs core.a.b (its packages run first, but they are
        # not what the importer asked for); keep only modules of core.
        if name in modules and name != here:
            edges.add(name)
    return edges


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    """The modules under ``root`` (default: core) and which of them each imports."""
    paths = sorted((root or CORE).rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (as a path that returns to its start), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt) == white:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            found = walk(node)
            if found:
                return found
    return None


def test_core_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle in core: " + " → ".join(cycle or [])


def test_the_cycle_finder_sees_a_function_level_circle(tmp_path: Path) -> None:
    """The test above would catch a circle made by an import inside a function."""
    graph = {"core.a": {"core.b"}, "core.b": {"core.c"}, "core.c": {"core.a"}, "core.d": set()}
    assert find_cycle(graph) == ["core.a", "core.b", "core.c", "core.a"]
    assert find_cycle({"core.a": {"core.b"}, "core.b": set()}) is None


def test_function_level_and_relative_imports_are_edges(tmp_path: Path) -> None:
    package = tmp_path / "core"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "one.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from core.sub import three\n"
        "def later():\n    from core.sub import two\n"
    )
    (package / "sub" / "two.py").write_text("from . import one\n")
    (package / "sub" / "three.py").write_text("")
    modules = {"core", "core.sub", "core.sub.one", "core.sub.two", "core.sub.three"}
    global CORE
    saved, CORE = CORE, package
    try:
        assert imported_modules(package / "sub" / "one.py", modules) == {"core.sub.two"}
        assert imported_modules(package / "sub" / "two.py", modules) == {"core.sub.one"}
    finally:
        CORE = saved


# -- the command line: tui/commands and tui's top-level modules --------------------------


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The modules that import each other, as groups: each group is a circle or several
    joined (Tarjan's strongly connected components of more than one module, or of one
    that imports itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def command_line_tangles(root: Path = TUI) -> list[set[str]]:
    """The circles of ``tui`` that take in a module of ``tui/commands`` or a top-level
    module of ``tui`` (``tui.cli``, ``tui.output`` …), counting imports inside functions.

    The whole of ``tui`` is read, console included, so that a circle that passes
    through the console (a command importing a screen that imports the command) is
    seen too; circles wholly inside the console are its own test's.
    """
    return [
        group
        for group in tangles(import_graph(root))
        if any(not name.startswith("tui.console") for name in group)
    ]


def test_no_circle_passes_through_the_command_line() -> None:
    found = command_line_tangles()
    assert not found, "import circle through tui's command line: " + "; ".join(
        " ↔ ".join(sorted(group)) for group in found
    )


def test_a_function_level_import_between_two_commands_is_a_circle(tmp_path: Path) -> None:
    """What the test above guards against: ``run`` registering ``export`` at the top,
    and ``export`` taking a helper from ``run`` inside its handler."""
    commands = tmp_path / "tui" / "commands"
    console = tmp_path / "tui" / "console"
    commands.mkdir(parents=True)
    console.mkdir()
    for folder in (tmp_path / "tui", commands, console):
        (folder / "__init__.py").write_text("")
    (commands / "run_cmd.py").write_text("from tui.commands import export_cmd\n")
    (commands / "export_cmd.py").write_text(
        "def handler():\n    from tui.commands.run_cmd import existing_run\n"
    )
    (commands / "console_cmd.py").write_text("def open():\n    from tui.console import app\n")
    (console / "app.py").write_text("from tui.console import screen\n")
    (console / "screen.py").write_text("from tui.console import app\n")
    global CORE
    saved, CORE = CORE, tmp_path / "core"  # module names are read relative to its parent
    try:
        assert command_line_tangles(tmp_path / "tui") == [
            {"tui.commands.export_cmd", "tui.commands.run_cmd"}
        ]
        # The console's own circle is the console's test's, not this one's …
        assert {"tui.console.app", "tui.console.screen"} in tangles(import_graph(tmp_path / "tui"))
        # … but a screen that imports a command back closes a circle through the command line.
        (console / "screen.py").write_text("from tui.commands import console_cmd\n")
        assert {
            "tui.commands.console_cmd",
            "tui.console.app",
            "tui.console.screen",
        } in command_line_tangles(tmp_path / "tui")
    finally:
        CORE = saved
