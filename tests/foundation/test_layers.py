"""The packages' imports point one way (docs/architecture.md) and no module imports itself in a circle.

Every import counts, at module level, under TYPE_CHECKING or inside a function: a lazy import is still
a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("servescope", "server", "exporter", "loadtest", "analysis", "cli")
# What each package may import besides itself. servescope holds the contracts and imports nothing above
# it; the command line sits above everything.
ALLOWED = {
    "servescope": set(),
    "server": {"servescope"},
    "exporter": {"servescope"},
    "loadtest": {"servescope"},
    "analysis": {"servescope"},
    "cli": {"servescope", "server", "exporter", "loadtest", "analysis"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = {
        module_name(path): path
        for package in PACKAGES
        for path in (REPO_ROOT / package).rglob("*.py")
        if "_pb2" not in path.name
    }
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` depends on the module, `from module import name` on it.
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.append(sub if sub in modules else node.module)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
        graph.setdefault(name, set())
    return graph


def test_packages_import_only_downwards() -> None:
    wrong = []
    for module, targets in imports().items():
        package = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = imports()
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []
