"""The tree shows the flow, and imports only go down it.

Packages in the order data flows: sources -> buffer -> inference (regions, models)
-> publish (MQTT) / web, with config below all of them and the daemon (service)
and command line above. Each package imports only its own layer or below;
the runtime never imports the model-building (export) or training code; and no
module imports one that (directly or not) imports it back, inside packages too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgecam"

# Lower numbers are lower layers. A module may import its own layer or below.
LAYERS = {
    "errors": 0, "backoff": 0, "heartbeat": 0, "histogram": 0, "logs": 0, "secrets": 0,
    "config": 1,
    "result": 2, "buffer": 2, "sources": 2, "model": 2, "images": 2,
    "regions": 3, "dataset": 3, "preview": 3, "export": 3,
    "inference": 4, "training": 4,
    "control": 5,
    "publish": 6, "web": 6,
    "service": 7,
    "cli": 8, "bench": 9, "__main__": 9,
}
# Same-layer packages that must not import each other either.
SIBLINGS_APART = [("publish", "web"), ("sources", "model"), ("buffer", "model"), ("inference", "training"),
                  ("regions", "export"), ("dataset", "export"), ("preview", "export")]
# What `edgecam run` imports must never reach the model-building or training code.
RUNTIME = {"errors", "backoff", "heartbeat", "histogram", "logs", "secrets", "config", "result", "buffer", "sources",
           "model", "images",
           "regions", "dataset", "preview", "inference", "control", "publish", "web", "service"}
BUILD_ONLY = {"export", "training", "bench"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def top_level(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def imports_of(path: Path) -> set[str]:
    """Every edgecam module ``path`` imports, wherever the import statement is (function
    bodies and TYPE_CHECKING blocks too): ``from edgecam.x import y`` names edgecam.x.y
    when y is a module, else edgecam.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("edgecam")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("edgecam"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES and name != own}


GRAPH = {module: imports_of(path) for module, path in MODULES.items()}


def test_every_package_has_a_layer() -> None:
    packages = {top_level(module) for module in MODULES} - {"__init__"}
    assert packages <= set(LAYERS), f"give these a layer: {sorted(packages - set(LAYERS))}"


def test_imports_only_go_down() -> None:
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        own = top_level(module)
        for target in sorted(targets):
            other = top_level(target)
            if other in ("__init__", own):
                continue
            if LAYERS[other] > LAYERS[own]:
                wrong.append(f"{module} imports {target} (a higher layer)")
            if (own, other) in SIBLINGS_APART or (other, own) in SIBLINGS_APART:
                wrong.append(f"{module} imports its sibling {target}")
            if own in RUNTIME and other in BUILD_ONLY:
                wrong.append(f"{module} (runtime) imports build-only {target}")
    assert not wrong, "\n".join(wrong)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_import_circle_anywhere() -> None:
    circles = strongly_connected(GRAPH)
    assert not circles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_edgecam_run_imports_no_build_or_training_code() -> None:
    """Everything `edgecam run` can reach from its command module, lazily imported modules included."""
    seen, todo = set(), ["edgecam.cli.run", "edgecam.cli", "edgecam.__main__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(GRAPH[module])
    reached = sorted(m for m in seen if top_level(m) in BUILD_ONLY)
    assert not reached, reached
