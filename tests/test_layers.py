"""The package's layers: every module imports only from its own layer or the ones below, and no two modules
import each other, directly or round a longer loop (function-level imports included; ``if TYPE_CHECKING:``
blocks excluded, since they never run). The order is the one in the package docstring (unlearnkit/__init__.py).

Run: .venv/bin/python -m pytest tests/test_layers.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "unlearnkit"

# Lowest first. A key is a module (``train``) or a folder (``methods``: every module in it).
LAYERS: list[set[str]] = [
    {"errors"},
    {"registry", "params", "files", "device", "ray_session"},
    {"data"},
    {"models"},
    {"train"},
    {"exact", "metrics"},
    {"methods"},
    {"unlearning"},
    {"relearn"},
    {"evaluation"},
    {"detect"},
    {"runs"},
    {"federated"},
    {"bench"},
    {"stream"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """The layer index of ``unlearnkit.X[.Y]`` by X; None for the package root (it re-exports the API)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for index, members in enumerate(LAYERS):
        if parts[1] in members:
            return index
    raise AssertionError(f"{module} is in no layer; add it to LAYERS in tests/test_layers.py and the package docstring")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str) -> set[str]:
    """The unlearnkit modules ``module`` imports, resolved to modules that exist (a name imported from a
    package that is itself a submodule counts as that submodule)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            found.update(t for t in targets if t.split(".")[0] == "unlearnkit")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "unlearnkit":
                continue
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            found.update(subs if len(subs) == len(node.names) else [base, *subs])
    unknown = {m for m in found if m not in MODULES}
    assert not unknown, f"{module} imports modules that do not exist: {sorted(unknown)}"
    return found - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "unlearnkit"))
def test_module_imports_only_its_own_layer_or_lower(module):
    own = layer_of(module)
    for target in sorted(GRAPH[module]):
        other = layer_of(target)
        assert other is not None and other <= own, (
            f"{module} (layer {own}: {sorted(LAYERS[own])}) imports {target} "
            f"(layer {other}: {'package root' if other is None else sorted(LAYERS[other])})"
        )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None; depth-first search with colours."""
    colour = dict.fromkeys(graph, 0)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if colour[start] == 0 and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    # the checker itself must be able to fail: plant a loop three modules long
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_entry_modules_are_not_shadowed_by_the_functions_they_export():
    # `import a.b as m` binds getattr(a, "b"): a function exported under a submodule's name would win
    import unlearnkit
    import unlearnkit.evaluation as evaluation_module
    import unlearnkit.unlearning as unlearning_module

    for module in (evaluation_module, unlearning_module):
        assert type(module).__name__ == "module", module

    assert callable(unlearnkit.evaluate) and callable(unlearnkit.unlearn)
    assert unlearnkit.evaluate.__module__ == "unlearnkit.evaluation"
    assert unlearnkit.unlearn.__module__ == "unlearnkit.unlearning"
