"""The import graph follows the data flow: a layer imports only layers below it, and no module
imports another in a cycle. Every ``import`` is parsed, including those inside functions (the
lazy ones are still arrows)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "zhcls"

# Lowest first. Packages (or foundation modules) of one rank never import each other.
LAYERS: dict[str, int] = {
    "errors": 0, "_version": 0,
    "configio": 0.5,      # the generic config machinery that config (1) imports and re-exports
    "config": 1, "devices": 1, "utils": 1,
    "data": 2,
    "modeling": 3,        # encoder, heads, model, projection, forward passes, checkpoint format
    "losses": 4,
    "evaluation": 5,      # metrics (used by training's model selection), evaluate a split
    "training": 6,
    "report": 7,
    "inference": 8,       # Classifier, I/O, ONNX backend, export, explain
    "label": 9, "serve": 9,
    "workflows": 10,      # train-and-report, demo, sweep
    "cli": 11,
    "__init__": 12, "__main__": 12,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes inside ``if TYPE_CHECKING:`` blocks (type-only, no runtime import)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(path: Path, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("zhcls"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zhcls"):
            found.add(node.module)
            # `from zhcls.pkg import module` imports the submodule too
            for alias in node.names:
                if (SRC.parent / node.module.replace(".", "/") / f"{alias.name}.py").is_file():
                    found.add(f"{node.module}.{alias.name}")
    return found


def graph(runtime_only: bool = False) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p, runtime_only) for p in SRC.rglob("*.py")}


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))}
    assert tops - set(LAYERS) == set(), "give new top-level modules a layer in LAYERS"


def test_no_arrow_from_a_lower_layer_to_a_higher_one():
    bad = []
    for module, targets in graph().items():
        own = layer_of(module)
        for target in targets:
            other = layer_of(target)
            if other != own and LAYERS[other] >= LAYERS[own]:
                bad.append(f"{module} ({own}, {LAYERS[own]}) imports {target} "
                           f"({other}, {LAYERS[other]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle_between_modules():
    """Runtime imports only: a type annotation under ``if TYPE_CHECKING`` loads nothing (it
    still counts for the layer rule above)."""
    g = {m: {t for t in ts if t != m} for m, ts in graph(runtime_only=True).items()}
    # a package's __init__ importing its own submodules is not a cycle of concern
    for m in g:
        g[m] = {t for t in g[m] if not (t.startswith(m + ".") and (SRC.parent / m.replace(
            ".", "/") / "__init__.py").is_file())}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in g.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt in g and state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if state.get(node) is None:
            visit(node)


def test_the_checker_sees_a_backward_arrow(tmp_path):
    """The checker itself can fail: a training module importing the report layer is caught."""
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from zhcls.report.run_report import build_report\n")
    targets = imports_of(fake)
    assert "zhcls.report.run_report" in targets
    assert LAYERS[layer_of("zhcls.report.run_report")] > LAYERS["training"]
