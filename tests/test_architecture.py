"""House rules on the package's shape, read from the source with `ast` (nothing is imported):
no import cycle between modules, none between the sub-packages, and no module over 600 lines.

The import graph has one node per module of workbench/ and an edge for every import of another
workbench module, absolute or relative, at module level or inside a function (a function-level import
still ties the two modules together; it only hides the cycle until the function runs). Imports under
`if TYPE_CHECKING:` are left out: they never run. `from . import x` is an edge to the module `x` when
there is one, else to the package. An edge goes to the module named, not to its parent packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "workbench"
MAX_LINES = 600

# Cycles known to remain, each with the change that removes it. Remove an entry with that change: the test
# fails while an entry names a cycle that no longer exists, so the list cannot go stale.
KNOWN_MODULE_CYCLES: set[frozenset[str]] = set()
KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()
# Modules allowed over MAX_LINES, with the reason; remove an entry when its module is split.
LONG_MODULES: dict[str, str] = {}


def module_files() -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package __init__)} for every module of workbench/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _owner(name: str, modules) -> str | None:
    """The module `name` refers to: itself, or the nearest enclosing module (a class or function in it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                wanted = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            targets.update(t for t in (_owner(w, modules) for w in wanted) if t and t != name)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle_path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop inside a component, for the failure message: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(t for t in graph[path[-1]] if t in members)
        back = [t for t in nxt if t in seen]
        step = back[0] if back else next(t for t in nxt if t not in seen)
        path.append(step)
        if step in seen:
            return " -> ".join(path[path.index(step) :])
        seen.add(step)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Modules collapsed to their sub-package of workbench (workbench.jobs.runner -> workbench.jobs)."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        collapsed.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    return collapsed


def unexpected(found: list[list[str]], known: set[frozenset[str]]) -> list[list[str]]:
    return [c for c in found if frozenset(c) not in known]


# ---- the graph builder itself ----------------------------------------------------------------------
def test_the_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "workbench.config" in graph["workbench.jobs.runner"]  # from ..config import (relative, module level)
    assert "workbench.reports.site" in graph["workbench.jobs.runner"]  # from ..reports.site import (in a function)
    assert "workbench.jobs.engine" in graph["workbench.jobs.runner"]  # from . import engine as _engine
    assert "workbench.runs.record" not in graph["workbench.alerts"]  # under `if TYPE_CHECKING:`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert a_cycle_path({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == "a -> b -> c -> a"


# ---- the rules -------------------------------------------------------------------------------------
def test_no_import_cycle_between_modules():
    graph = import_graph()
    bad = unexpected(cycles(graph), KNOWN_MODULE_CYCLES)
    assert not bad, "import cycles: " + "; ".join(a_cycle_path(graph, c) for c in bad)


def test_no_import_cycle_between_sub_packages():
    """jobs -> reports -> jobs was a cycle of packages made of acyclic modules: layers, not just modules."""
    graph = package_graph(import_graph())
    bad = unexpected(cycles(graph), KNOWN_PACKAGE_CYCLES)
    assert not bad, "sub-package cycles: " + "; ".join(a_cycle_path(graph, c) for c in bad)


def test_every_allowed_cycle_still_exists():
    """An allow-list entry whose cycle is gone must be removed, so it cannot hide a new one later."""
    graph = import_graph()
    found = cycles(graph) + cycles(package_graph(graph))
    gone = [sorted(k) for k in KNOWN_MODULE_CYCLES | KNOWN_PACKAGE_CYCLES if not any(k <= set(c) for c in found)]
    assert not gone, f"allowed cycles that are gone (remove them from the allow-lists in {Path(__file__).name}): {gone}"


def test_no_module_over_600_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p, _ in module_files().values()}
    too_long = {f: n for f, n in sizes.items() if n > MAX_LINES and f not in LONG_MODULES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by responsibility): {too_long}"
    stale = sorted(f for f in LONG_MODULES if sizes.get(f, 0) <= MAX_LINES)
    assert not stale, f"no longer over {MAX_LINES} lines (or gone), remove from LONG_MODULES: {stale}"
