"""`core` and `tui` (the command line and the console) have no import circle: not at
module level, and not inside functions; nor has any pair of their packages.

The graph is built from the source with ``ast``: every ``import core.x`` and
``from core.x import y`` in a module of ``core``, at module level *and* inside
functions (a function-level import only postpones a circle to run time; it is
still two modules that need each other). Imports under ``if TYPE_CHECKING:``
are left out: they never run, and exist for type hints only. ``from
core.pkg import module`` is an edge to that module, not to the package's
``__init__`` (which Python has already begun, and which may re-export it).

A package here is ``core.X`` or ``tui.X``, where X is a subpackage or a
top-level module (``core.delivery``, ``core.follow_up``, ``tui.console``): two
of them that import each other, each through some module, are one house
whose floors cannot be told apart, even when no two modules import each other.
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


def import_graph(*roots: Path) -> dict[str, set[str]]:
    """The modules under ``roots`` (default: core) and which of them each imports."""
    paths = sorted(path for root in roots or (CORE,) for path in root.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def package_of(module: str) -> str:
    """``core.delivery.queries`` → ``core.delivery``; ``core.follow_up`` → itself."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """Which packages each package imports, and through which of its modules:
    ``{importer: {imported: {"module → module", …}}}``; a package's imports of
    itself are left out."""
    packages: dict[str, dict[str, set[str]]] = {}
    for module, needs in graph.items():
        importer = package_of(module)
        edges = packages.setdefault(importer, {})
        for other in needs:
            imported = package_of(other)
            if imported != importer:
                edges.setdefault(imported, set()).add(f"{module} → {other}")
    return packages


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


def test_tui_has_no_import_circle() -> None:
    """The command line and the console: screens open each other through the
    navigator and type against ``tui.console.context``, never importing each
    other or the app (imports inside functions count)."""
    cycle = find_cycle(import_graph(TUI))
    assert cycle is None, "import circle in tui: " + " → ".join(cycle or [])


def test_no_two_packages_import_each_other() -> None:
    """Counting imports inside functions: a package imports only packages below it."""
    packages = package_graph(import_graph(CORE, TUI))
    cycle = find_cycle({name: set(needs) for name, needs in packages.items()})
    assert cycle is None, "import circle between packages: " + "; ".join(
        f"{a} → {b} ({', '.join(sorted(packages[a][b]))})"
        for a, b in zip(cycle or [], (cycle or [])[1:], strict=False)
    )


def test_a_package_circle_is_seen_where_no_two_modules_import_each_other() -> None:
    graph = {
        "core.a.one": {"core.b.two"},
        "core.b.two": {"core.a.three"},
        "core.a.three": set(),
        "core.c": {"core.a.one"},
    }
    assert find_cycle(graph) is None
    packages = package_graph(graph)
    assert packages["core.a"] == {"core.b": {"core.a.one → core.b.two"}}
    assert packages["core.c"] == {"core.a": {"core.c → core.a.one"}}
    assert find_cycle({name: set(needs) for name, needs in packages.items()}) == [
        "core.a",
        "core.b",
        "core.a",
    ]


def test_console_screens_import_no_other_screen_nor_the_app() -> None:
    """Only the app and the navigator know the screens; a screen knows the places."""
    graph = import_graph(TUI)
    screens = {name for name in graph if name.endswith("_screen")}
    for name in screens:
        others = graph[name] & (screens | {"tui.console.app", "tui.console.navigator"})
        assert not others, f"{name} imports {sorted(others)}: visit a place instead"


def test_the_tui_graph_counts_imports_inside_functions(tmp_path: Path) -> None:
    """A circle hidden behind an import inside a function is still one (a console
    screen opening another screen lazily, as they once did)."""
    package = tmp_path / "tui"
    (package / "console").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "console" / "__init__.py").write_text("")
    (package / "console" / "app.py").write_text("from tui.console.runs_screen import RunsScreen\n")
    (package / "console" / "runs_screen.py").write_text(
        "def open():\n    from tui.console.app import MsgrunConsole\n"
    )
    global CORE
    saved, CORE = CORE, tmp_path / "core"
    try:
        cycle = find_cycle(import_graph(package))
    finally:
        CORE = saved
    assert cycle == ["tui.console.app", "tui.console.runs_screen", "tui.console.app"]


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
