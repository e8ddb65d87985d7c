"""The engine's shape, read from its source: one direction of dependency, no private names
imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"toilray": REPO / "toilray", "toilray.backends": REPO / "backends"}

# Toil's API makes Job.Runner.startToil open a Toil itself, and toilray.run/start (loaded when
# first used) are the package's own entry: the imports allowed to point up.
ALLOWED_UPWARD = {("toilray.job", "toilray.common"), ("toilray", "toilray.runs")}


def modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that an imported dotted name lives in (a name inside it, or itself)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(known: dict[str, Path]) -> dict[str, set[tuple[str, str]]]:
    """Module -> {(imported module, imported name)}, counting imports inside functions too."""
    graph: dict[str, set[tuple[str, str]]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[tuple[str, str]] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name, known)
                    if target:
                        edges.add((target, ""))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in known else _owner(base, known)
                    if target:
                        edges.add((target, "" if target == full else alias.name))
        graph[name] = {(t, n) for t, n in edges if t != name}
    return graph


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    for start in sorted(edges):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return []


def test_the_import_graph_has_one_direction() -> None:
    known = modules()
    graph = imports(known)
    edges = {m: {t for t, _ in targets if (m, t) not in ALLOWED_UPWARD} for m, targets in graph.items()}
    assert find_cycle(edges) == []
    # The check itself sees cycles: the allowed upward import does close one.
    assert find_cycle({m: {t for t, _ in targets} for m, targets in graph.items()}) != []


# Top to bottom; a module may import from its own layer or any layer below. The longest
# matching prefix places a module, and every module must be placed.
LAYERS: list[tuple[str, ...]] = [
    ("toilray.cli", "toilray.cwl", "toilray.wdl", "toilray.server", "toilray.__main__"),  # front ends
    ("toilray.common", "toilray.runs"),  # Toil, toilray.run/start: run a workflow
    ("toilray.leader", "toilray.services", "toilray.run_reports", "toilray.leader_state", "toilray.leader_results",
     "toilray.compensation"),
    ("toilray.worker",),
    ("toilray.job",),  # the job API
    ("toilray.config", "toilray.fileStores", "toilray.callCache", "toilray.deferred", "toilray.lib.urls",
     "toilray.stats", "toilray.hpc_schedulers", "toilray.elastic",
     "toilray.stats_page",
     "toilray.cluster", "toilray.ray_choice"),
    ("toilray.jobStores",),
    ("toilray.backends",),
    ("toilray", "toilray.jobStores.storage", "toilray.protocol",
     "toilray.serialize", "toilray.requirements", "toilray.statsAndLogging", "toilray.batchSystems",
     "toilray.options", "toilray.exceptions", "toilray.lib", "toilray.local_ray", "toilray.progress",
     "toilray.realtimeLogger"),  # foundations: import nothing above
]


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), level)
    assert best is not None, f"{module} is in no layer of tests/test_structure.py: place it"
    return best[1]


def test_layers_point_down() -> None:
    """Front ends use the engine, the engine the stores, the stores the back ends; never back."""
    graph = imports(modules())
    upward = sorted(
        (module, target)
        for module, targets in graph.items()
        for target, _ in targets
        if (module, target) not in ALLOWED_UPWARD and layer_of(target) < layer_of(module)
    )
    assert upward == []


def test_no_private_name_is_imported_from_another_module() -> None:
    graph = imports(modules())
    private = sorted((module, target, name) for module, targets in graph.items() for target, name in targets
                     if name.startswith("_"))
    assert private == []
