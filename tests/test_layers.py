"""The package is layered: core < training < evaluation < study < plots < edges, without circles.

Every module of ``cl_analysis`` is parsed (``ast``, imports inside functions included, ``if
TYPE_CHECKING`` blocks too: they name the dependency all the same) and its imports of other
``cl_analysis`` modules are checked against the layer order of docs/architecture.md.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import cl_analysis

PACKAGE = "cl_analysis"
CORE = {"_checks", "losses", "metric_losses", "gradients", "metrics", "registry", "toy",
        "weighting", "diagnostics"}
LAYERS = ("core", "training", "evaluation", "study", "plots", "edges")
EDGES = {"reproduce", "cli", "__main__", "book"}


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> source file (packages as their __init__)."""
    root = Path(cl_analysis.__file__).parent
    found = {PACKAGE: root / "__init__.py"}
    for info in pkgutil.walk_packages([str(root)], prefix=f"{PACKAGE}."):
        rel = info.name.split(".")[1:]
        path = root.joinpath(*rel)
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    """The layer of a dotted module name (``cl_analysis`` itself is the package's front door)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    if top in CORE:
        return "core"
    if top in EDGES:
        return "edges"
    if top in LAYERS:
        return top
    raise AssertionError(f"{module} is in no layer; add it to tests/test_layers.py and "
                         f"docs/architecture.md")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The cl_analysis modules an ``ImportFrom`` node reads (``from . import a, b`` -> both)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    out = []
    for alias in node.names:  # `from pkg import submodule` imports the submodule
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in MODULES else target)
    return out


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):  # every import, at module level or inside a function
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            found |= set(_resolve(module, path.name == "__init__.py", node))
    resolved = set()
    for name in found:  # `import cl_analysis.training.data` -> the longest known module
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        resolved.add(name)
    resolved.discard(module)
    # a module imports its own package's __init__ implicitly: not an edge worth a circle
    return {m for m in resolved if not module.startswith(m + ".")}


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    assert len(MODULES) > 20, sorted(MODULES)
    for module in MODULES:
        _layer(module)
    assert {"cl_analysis.cli", "cl_analysis.reproduce", "cl_analysis.training.config",
            "cl_analysis.study.sweep", "cl_analysis.evaluation.evaluate"} <= set(MODULES)


def test_the_walk_sees_imports_inside_functions():
    # reproduce() imports the study layer inside the function: the walk must see it
    assert "cl_analysis.study.sweep" in GRAPH["cl_analysis.reproduce"]
    assert "cl_analysis.training.config" in GRAPH["cl_analysis.cli"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_higher_layer(module):
    layer = _layer(module)
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for target in sorted(GRAPH[module]):
        target_layer = _layer(target)
        if layer == "package":  # cl_analysis/__init__.py: `from cl_analysis import losses`
            if target_layer != "core":
                bad.append(f"{target} ({target_layer})")
        elif target_layer == "package":
            bad.append(f"{target} (the package __init__: import the module itself)")
        elif rank[target_layer] > rank[layer]:
            bad.append(f"{target} ({target_layer})")
    assert not bad, f"{module} ({layer}) imports from a higher layer: {', '.join(bad)}"


def test_no_import_circle():
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_the_checker_finds_a_circle_and_an_upward_import(monkeypatch):
    """The checks above can fail: a fake upward edge and a fake circle are reported."""
    fake = {k: set(v) for k, v in GRAPH.items()}
    fake["cl_analysis.losses"].add("cl_analysis.cli")
    monkeypatch.setitem(globals(), "GRAPH", fake)
    with pytest.raises(AssertionError, match="higher layer"):
        test_no_import_from_a_higher_layer("cl_analysis.losses")
    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circle()
