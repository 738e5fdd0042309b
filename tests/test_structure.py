"""The package's shape (docs/design.md, "Data flow"): no import circles among the modules of `mos`,
counting imports inside functions too, and no module over MAX_LINES lines. Read from the source
with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mos"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of `mos` it imports anywhere in its source (top level, functions,
    TYPE_CHECKING blocks). `from pkg import sub` is an edge to the submodule alone: a package's
    __init__ always runs before its submodules, so that is not an edge."""

    def owner(name: str) -> str | None:  # the longest module prefix of a dotted name
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(owner(a.name) or "" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else owner(base) or "")
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle_through_a_function_level_import() -> None:
    graph = {"mos.a": {"mos.b"}, "mos.b": {"mos.c"}, "mos.c": {"mos.a"}, "mos.d": {"mos.a"}}
    assert cycles(graph) == [["mos.a", "mos.b", "mos.c"]]
    assert cycles({"mos.a": {"mos.b"}, "mos.b": set()}) == []


def test_no_import_circles_in_mos() -> None:
    modules = _modules()
    graph = import_graph(modules)
    assert "mos.runtime.engine" in graph["mos.runtime.scorer"]  # the graph is really read
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(
        " <-> ".join(group) + " (" + ", ".join(f"{a} -> {b}" for a in group for b in sorted(graph[a]) if b in group) + ")"
        for group in found)


def test_no_module_over_the_line_limit() -> None:
    sizes = {path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in _modules().values()}
    assert len(sizes) > 50
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by job): {over}"
