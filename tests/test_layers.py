"""The import layers of docs/architecture.md#layers: no module imports from a layer above its own, and no two
packages import each other (directly or round a longer loop).

Every import counts, wherever it sits: at the top of a module, inside a function, or under `if TYPE_CHECKING:`.
A function-level import is still a dependency at run time; it defers the cost of importing, not the coupling.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "nullsae"

# Lowest first. A unit is a top-level module (`nullsae.stats`) or a subpackage with everything in it
# (`nullsae.sae`); a unit imports only units of its own layer or of the layers below it. `nullsae` is
# the package's own `__init__`: every import of a submodule runs it, so it stays on the ground.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "ground",
        {
            "nullsae",
            "errors",
            "io_utils",
            "locks",
            "progress",
            "extras",
            "devices",
            "resources",
            "stats",
            "text_spans",
            "assets",
            "model_shape",
            "data",
            "tasks",
        },
    ),
    ("config", {"config"}),  # CONFIG_MODULES
    ("models, sae", {"models", "sae"}),
    ("metrics, activations", {"metrics", "activations"}),
    ("metric families and benchmarks", {"autointerp", "probing", "editing", "toy", "synth"}),
    ("family registry", {"families"}),  # each metric family's compute, versioned result and verdict metrics, read by runner and report
    ("experiment", {"experiment"}),
    ("report", {"report"}),
    ("pipeline", {"pipeline"}),  # a run from config to report: experiment, then report
    ("commands", {"commands", "cli", "config_reference"}),
]

# Known violations, each (importer, imported) and who is removing it. An entry whose import is gone, or
# no longer a violation, fails `test_allowed_violations_still_exist`: delete it then.
ALLOWED: set[tuple[str, str]] = set()

# The config classes, importable without torch: the run config and the per-package configs it collects
# (with the prompt texts the auto-interp config records). They form the `config` unit wherever they sit.
CONFIG_MODULES = ("nullsae.config", "nullsae.sae.config", "nullsae.autointerp.config", "nullsae.autointerp.prompts")

RANK = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """`nullsae.sae.io` → `sae`, `nullsae.stats` → `stats`, `nullsae` → `nullsae`; a module of CONFIG_MODULES → `config`."""
    if any(module == m or module.startswith(m + ".") for m in CONFIG_MODULES):
        return "config"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> tuple[str, list[str]]:
    """A source file's dotted module name and the package its relative imports start from."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), parts
    return ".".join(parts), parts[:-1]


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported(node: ast.AST, package: list[str]) -> list[str]:
    """The modules an import statement loads: `from a import b` loads `a.b` when that is a module, else `a`."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]) if node.level else node.module or ""
        base = base.rstrip(".")
        return [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
    return []


def _units() -> set[str]:
    """The package's top-level modules and subpackages, and `nullsae` itself."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return modules | {p.parent.name for p in PACKAGE.glob("*/__init__.py")} | {"nullsae"}


@cache
def import_edges() -> dict[tuple[str, str], list[str]]:
    """Every import between two units of the package: (importer, imported) → where (`file:line`)."""
    units = _units()
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module, package = _module_name(path)
        imports = (n for n in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(n, ast.Import | ast.ImportFrom))
        for node in imports:
            for name in _imported(node, package):
                if name.split(".")[0] != "nullsae":
                    continue
                src, dst = _unit(module), _unit(name)
                if dst in units and src != dst:
                    edges.setdefault((src, dst), []).append(f"{path.relative_to(SRC)}:{node.lineno}")
    return edges


def _upward(edge: tuple[str, str]) -> bool:
    return RANK[edge[0]] < RANK[edge[1]]


def _cycles(edges) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan's algorithm)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_exactly_one_layer():
    units = _units()
    listed = [u for _, us in LAYERS for u in us]
    assert len(listed) == len(set(listed)), "a unit is listed in two layers"
    assert units - set(listed) == set(), "give these modules a layer in LAYERS (and in docs/architecture.md#layers)"
    assert set(listed) - units == set(), "these LAYERS entries name no module: remove them"


def test_no_import_from_a_higher_layer():
    upward = {e: where for e, where in import_edges().items() if _upward(e) and e not in ALLOWED}
    lines = [
        f"{a} ({LAYERS[RANK[a]][0]}) imports {b} ({LAYERS[RANK[b]][0]}) at {', '.join(where)}" for (a, b), where in sorted(upward.items())
    ]
    assert not lines, "imports from a higher layer:\n" + "\n".join(lines)


def test_no_cycle_between_packages():
    edges = [e for e in import_edges() if e not in ALLOWED]
    cycles = _cycles(edges)
    detail = [
        f"{' ↔ '.join(c)}: " + "; ".join(f"{a}→{b} at {import_edges()[a, b][0]}" for a, b in edges if a in c and b in c) for c in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_allowed_violations_still_exist():
    edges = import_edges()
    cycle_edges = {(a, b) for c in _cycles(list(edges)) for a, b in edges if a in c and b in c}
    stale = sorted(e for e in ALLOWED if e not in edges or not (_upward(e) or e in cycle_edges))
    assert not stale, f"these ALLOWED entries are no longer violations: delete them from tests/test_layers.py: {stale}"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from nullsae.report import html", {("experiment", "report")}),
        ("def f():\n    from ..report.html import render", {("experiment", "report")}),
        ("import nullsae.sae.io as sio", {("experiment", "sae")}),
        ("from . import store", set()),
        ("from nullsae import report", {("experiment", "report")}),
    ],
)
def test_the_walk_sees_every_form_of_import(code, expected):
    """Absolute, relative, function-level and `from nullsae import x` imports, as written in `experiment/runner.py`."""
    package = ["nullsae", "experiment"]
    got = {
        ("experiment", _unit(name))
        for node in ast.walk(ast.parse(code))
        for name in _imported(node, package)
        if name.startswith("nullsae.") and _unit(name) != "experiment"
    }
    assert got == expected


def test_a_cycle_is_found_round_a_longer_loop():
    assert _cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    assert _cycles([("a", "b"), ("b", "c")]) == []
