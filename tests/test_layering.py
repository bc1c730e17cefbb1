"""Each package imports only downward: the layout shows the data flow
(sources -> buffer -> regions/model -> publish) and nothing below knows what is above.

The control protocol and the runtime settings live in edgecam/control, below
publish/ and preview/ (which call them) and service/ (which implements them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgecam"

# Lower numbers are lower layers. A module may import its own layer or below.
LAYERS = {
    "errors": 0, "backoff": 0, "heartbeat": 0, "logs": 0, "secrets": 0,
    "config": 1,
    "result": 2, "buffer": 2, "sources": 2, "model": 2,
    "regions": 3, "dataset": 3,
    "control": 4,
    "publish": 5, "preview": 5,
    "service": 6,
    "cli": 7, "__main__": 8,
}
# Same-layer packages that must not import each other either.
SIBLINGS_APART = [("publish", "preview"), ("sources", "model"), ("buffer", "model")]


def top_level(module_path: Path) -> str:
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def edgecam_imports(module_path: Path) -> set[str]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "edgecam" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_has_a_layer() -> None:
    packages = {top_level(path) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYERS), f"give these a layer: {sorted(packages - set(LAYERS))}"


def test_imports_only_go_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = top_level(path)
        if own == "__init__":
            continue
        for target in edgecam_imports(path):
            if target == own or target not in LAYERS:
                continue
            if LAYERS[target] > LAYERS[own]:
                upward.append(f"{path.relative_to(PACKAGE)} imports edgecam.{target}")
            if (own, target) in SIBLINGS_APART or (target, own) in SIBLINGS_APART:
                upward.append(f"{path.relative_to(PACKAGE)} imports its sibling edgecam.{target}")
    assert not upward, "\n".join(upward)
