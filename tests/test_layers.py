"""The layering of docs/architecture.md, checked on the source: each module imports only its own layer or
the layers below, and what only uses a trained model (inference/, export/, serve/) never imports engine/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "imgcls"

LAYERS = {
    "errors": 0, "options": 0, "paths": 0, "limits": 0, "progress": 0, "lazy": 0, "imagenet": 0,
    "models": 1,
    "weights": 2, "checkpoint": 2, "runtime": 2, "data": 2, "analysis": 2,
    "engine": 3, "tasks": 3, "inference": 3, "export": 3, "reports": 3, "demo": 3,
    "serve": 4, "compare": 4, "cli": 4, "__main__": 4,
}
# export/ may be used by inference/ (the ONNX Runtime runner for .onnx files), so it never imports inference/
NEVER = {"tasks": {"engine", "inference", "export", "serve"}, "inference": {"engine"}, "export": {"engine", "inference"}, "serve": {"engine", "reports", "demo", "compare", "cli"},
         "compare": {"serve", "cli"},
         "reports": {"engine", "inference"}}


def _unit(module: str) -> str:
    """`imgcls.engine.trainer` -> `engine`; `imgcls` itself is the package root (re-exports only)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("imgcls")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("imgcls"):
            found.add(node.module)
            if node.module == "imgcls":  # from imgcls import engine
                found |= {f"imgcls.{a.name}" for a in node.names}
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_unit_has_a_layer():
    units = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in _modules()}
    assert units <= set(LAYERS), f"give these a layer in tests/test_layers.py and docs/architecture.md: {units - set(LAYERS)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down(path):
    unit = path.relative_to(SRC).parts[0].removesuffix(".py")
    for module in _imports(path):
        other = _unit(module)
        if other in ("", unit) or other == "__version__":
            continue
        assert other in LAYERS, f"{module} is not a known unit"
        assert other not in NEVER.get(unit, set()), f"{unit}/ must not import {other}/ ({path.name} imports {module})"
        assert LAYERS[other] <= LAYERS[unit], (f"{path.relative_to(SRC)} (layer {LAYERS[unit]}) imports {module} "
                                               f"(layer {LAYERS[other]})")


def _module_name(path: Path) -> str:
    parts = ("imgcls", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The imgcls modules `path` imports when it runs: at the top or inside a function (a lazy import
    closes a cycle as surely as a top-level one), but not under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names}
    return found & known


def test_no_import_cycles():
    """No module reaches itself through imports (engine/config <-> engine/recipes and export/onnx <->
    export/quantize did); `from imgcls.data import x` counts as importing the package's __init__."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: _runtime_imports(p, set(paths)) - {name} for name, p in paths.items()}
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                assert nxt != start, "import cycle: " + " -> ".join(trail + [start])
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
