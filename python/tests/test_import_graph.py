"""No import cycle among the modules of the ``telegraphy`` package (issue 14).

Every module is parsed with ``ast``; every import counts, at module level and inside functions alike (a
function-level import hides a cycle from Python, not from the design): ``import telegraphy.x``,
``from telegraphy.x import y``, ``from . import x``, ``from ..x import y``. The edge goes to the submodule when
the imported name is one (``from . import names``), else to the module named. Importing a submodule also
initialises its parent packages; those implicit edges are not counted (Python initialises a package before
its submodules, so they never form a cycle that matters).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "telegraphy"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name ``from <level dots><module> import ...`` refers to, as Python resolves it."""
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(imported telegraphy module, line, where) for every import statement of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, str]] = []

    def add(target: str, node: ast.AST, where: str) -> None:
        # The longest prefix that is a module of the package (``telegraphy.conf.telegraphy_settings`` -> conf).
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.append((target, node.lineno, where))

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"in {child.name}()"
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        add(alias.name, child, where)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child.level, child.module)
                if base == PACKAGE or base.startswith(PACKAGE + "."):
                    for alias in child.names:
                        submodule = f"{base}.{alias.name}"
                        add(submodule if submodule in modules else base, child, where)
            visit(child, inner)

    visit(tree, "module level")
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, tuple[int, str]]]:
    """importer -> {imported: (line, where)} among the package's modules (first import statement kept)."""
    modules = package_modules(root)
    graph: dict[str, dict[str, tuple[int, str]]] = {name: {} for name in modules}
    for name, path in modules.items():
        for target, line, where in imports_of(name, path, modules):
            graph[name].setdefault(target, (line, where))
    return graph


def tangles(graph: dict[str, dict[str, tuple[int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: every module in one
    imports, directly or not, every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # the package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(components)


def find_cycles(graph: dict[str, dict[str, tuple[int, str]]]) -> list[list[str]]:
    """A shortest cycle (first module repeated last) through the first module of each tangle."""
    cycles = []
    for component in tangles(graph):
        members = set(component)
        start = component[0]
        previous: dict[str, str] = {}  # breadth-first from start, inside the component, back to start
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for nxt in sorted(graph[node]):
                    if nxt in members and nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        cycles.append(path[::-1])
    return cycles


def describe(graph: dict[str, dict[str, tuple[int, str]]]) -> str:
    """Each tangle: a shortest cycle with the file, line and scope of each import, then all its modules."""
    modules = package_modules()
    text = []
    for cycle, component in zip(find_cycles(graph), tangles(graph)):
        text.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            line, where = graph[a][b]
            path = modules[a].relative_to(ROOT.parent)
            text.append(f"    {a} -> {b}: {path} line {line}, {where}")
        text.append(f"  (modules of this tangle: {', '.join(component)})")
    return "\n".join(text)


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    if tangles(graph):
        pytest.fail("import cycle(s) in the telegraphy package:\n" + describe(graph), pytrace=False)


def test_the_checker_finds_cycles_in_the_whole_tangle():
    """Every module of a tangle is named (one shortest cycle is shown, then all the modules caught with it)."""
    graph = {"p.a": {"p.b": (1, "module level")}, "p.b": {"p.c": (2, "in f()")},
             "p.c": {"p.a": (3, "module level"), "p.d": (4, "module level")}, "p.d": {"p.b": (5, "in g()")},
             "p.e": {"p.a": (6, "module level")}}
    assert find_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
    assert tangles(graph) == [["p.a", "p.b", "p.c", "p.d"]]


def test_the_check_sees_every_kind_of_import(tmp_path):
    """The checker itself: module-level, function-level, relative (one and more dots), absolute and
    ``from . import submodule`` imports all make edges, and a cycle made of any of them is found."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("import telegraphy.sub.c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..d import y\n")
    (pkg / "d.py").write_text("class K:\n    async def m(self):\n        from telegraphy.a import f\n")
    graph = import_graph(pkg)
    assert graph["telegraphy"] == {"telegraphy.a": (1, "module level")}
    assert graph["telegraphy.a"] == {"telegraphy.b": (2, "in f()")}
    assert graph["telegraphy.b"] == {"telegraphy.sub.c": (1, "module level")}
    assert graph["telegraphy.sub.c"] == {"telegraphy.d": (1, "module level")}
    assert graph["telegraphy.d"] == {"telegraphy.a": (3, "in m()")}
    assert find_cycles(graph) == [["telegraphy.a", "telegraphy.b", "telegraphy.sub.c", "telegraphy.d", "telegraphy.a"]]
    (pkg / "d.py").write_text("")
    assert find_cycles(import_graph(pkg)) == []
