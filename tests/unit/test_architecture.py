"""The one-way house, checked from the source: no import cycle in `worker/` or `connectors/`, the
layers import only downwards, imports inside functions only for named heavy dependencies, and SQL
only in `worker/store/` (and the migration runner).

Run on its own to see the graph's findings: `pytest tests/unit/test_architecture.py -q`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "connectors", "schema")

# Imports inside a function, allowed only for these (module -> top-level packages), each because
# importing it at the top would cost every command something it does not need.
DEFERRED_IMPORTS = {
    # pgserver is slow to import and only the embedded mode needs it.
    "worker.db": {"pgserver"},
    # azure-devops reads AZURE_DEVOPS_CACHE_DIR once, at import: the connector sets it first.
    "connectors.azure_devops": {"azure", "msrest"},
    # the demo's sandboxes: no other command's start pays for them
    "worker.commands.demo": {"worker"},
    # the daemon's scheduler and listener: only `c9-sync run` loads them
    "worker.commands.run": {"worker"},
}

# The methods through which asyncpg runs SQL.
SQL_METHODS = {"fetch", "fetchrow", "fetchval", "fetchmany", "execute", "executemany", "prepare"}
SQL_HOMES = ("worker/store/", "worker/migrate.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and modules[name].name == "__init__.py"


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules: dict[str, Path]) -> set[str]:
    """The project modules an import statement loads (a package's `__init__` included)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = here if _is_package(here, modules) else here.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}".strip(".")
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            prefix = ".".join(parts[:k])
            if prefix in modules and prefix != here:
                out.add(prefix)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = sources()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):  # imports inside functions and TYPE_CHECKING too
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, name, modules)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_worker_or_connectors() -> None:
    graph = import_graph()
    assert "worker.sync" in graph and "worker.store.sync" in graph["worker.sync"]
    assert cycles(graph) == []


def test_layers_import_only_downwards() -> None:
    graph = import_graph()
    wrong = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            upward = (
                # only the CLI and the commands import the commands
                (target.startswith(("worker.commands", "worker.cli"))
                 and not module.startswith(("worker.commands", "worker.cli")))
                # connectors and the schema know nothing of the worker
                or (module.startswith(("connectors", "schema")) and target.startswith("worker"))
                # the store knows no tracker and no domain module above it
                or (module.startswith("worker.store") and target.startswith("worker.")
                    and not target.startswith(("worker.store", "worker.sanitize")))
                # the sandboxes are for tests and the demo only
                or (target.startswith("connectors.sandbox")
                    and not module.startswith("connectors.sandbox")
                    and module != "worker.demo")
            )  # fmt: skip
            if upward:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_imports_inside_functions_are_only_the_named_heavy_ones() -> None:
    wrong = []
    for name, path in sources().items():
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    tops = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    tops = {(node.module or "").split(".")[0]} if not node.level else {"."}
                else:
                    continue
                if not tops <= DEFERRED_IMPORTS.get(name, set()):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(tops)}")
    assert wrong == []


def sql_calls(path: Path) -> list[int]:
    """Lines of `x.fetch…(`, `x.execute…(`, `x.prepare(` and `x.copy_…(` calls in a file."""
    tree = ast.parse(path.read_text(), str(path))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and (node.func.attr in SQL_METHODS or node.func.attr.startswith("copy_"))
    )


def test_sql_is_written_only_in_the_store() -> None:
    outside, inside = [], 0
    for path in sorted((ROOT / "worker").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        lines = sql_calls(path)
        if rel.startswith(SQL_HOMES):
            inside += len(lines)
        else:
            outside += [f"{rel}:{line}" for line in lines]
    assert inside > 20  # the detector sees the store's own statements
    assert outside == []
