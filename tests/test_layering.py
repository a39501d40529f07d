"""The package's layering (docs/architecture.md): the library never imports the command line, and no two
modules import each other, directly or round a longer loop.

The imports are read from the source (``ast``), not executed: every ``import``/``from ... import`` counts,
at the top of a module or inside a function (a lazy import is still a dependency); only those under
``if TYPE_CHECKING:`` (annotations) are left out. A module importing its own parent package (``pplaw.laws``
from ``pplaw.laws.engine``, to register the laws) is not an edge, nor is importing ``pplaw`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / "python" / "pplaw"


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def import_graph(root: Path = PKG_DIR) -> dict[str, set[str]]:
    """Module -> the pplaw modules it imports."""
    mods = _modules(root)
    pkg = root.name

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        skip = _type_checking_nodes(tree)
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] != pkg:
                    continue
                r = resolve(t)
                if r and r != m and r != pkg and not m.startswith(r + "."):
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_cli(m: str) -> bool:
    return m == "pplaw.cli" or m.startswith("pplaw.cli.")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_package(graph):
    assert len(graph) > 50
    assert "pplaw.pipeline.loop" in graph and "pplaw.cli.main" in graph
    assert "pplaw.pipeline.stages" in graph["pplaw.pipeline.loop"]  # an ordinary edge is seen


def test_no_library_module_imports_the_command_line(graph):
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if not _is_cli(m) for t in ts if _is_cli(t))
    assert not bad, "library modules import pplaw.cli (move the code they need below cli/): " + ", ".join(bad)


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_a_cycle_and_a_cli_import(tmp_path):
    """The walker on a made-up package: a lazy import closing a loop, and a library module importing cli."""
    pkg = tmp_path / "pplaw"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "cli" / "tool.py").write_text("from pplaw import a\n")
    (pkg / "a.py").write_text("from pplaw.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pplaw import a  # lazy, still an edge\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pplaw import a\n"
                              "from pplaw.cli.tool import x\n")
    g = import_graph(pkg)
    assert cycles(g) == [["pplaw.a", "pplaw.b"]]
    assert g["pplaw.c"] == {"pplaw.cli.tool"}  # the TYPE_CHECKING import is not an edge


# docs/architecture.md, "Layers": every top-level module or package of pplaw and its layer (1: the top). A new
# module must be given its layer here (and there): the test below fails on one it does not know.
LAYERS = {
    "cli": 1,
    "pipeline": 2,
    "score": 3, "train": 3, "synth": 3, "laws": 3, "ray": 3,
    "landscape": 4, "sampling": 4, "filters": 4, "export": 4, "runs": 4, "io": 4, "config": 4, "tasks": 4,
    "cluster": 4, "stream": 4,
    "exceptions": 5, "_atomic": 5, "_columns": 5, "_checks": 5, "_fingerprint": 5, "_head": 5, "_lazy": 5,
    "_yaml": 5,
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def imports_up(graph: dict[str, set[str]]) -> list[str]:
    """The edges from a module to one of a higher layer (``pplaw/__init__.py``, the lazy public names, aside)."""
    return sorted(f"{m} -> {t}" for m, ts in graph.items() if m != "pplaw" for t in ts if _layer(t) < _layer(m))


def test_every_module_has_its_layer(graph):
    tops = {m.split(".")[1] for m in graph if m != "pplaw"}
    assert tops == set(LAYERS), f"not in LAYERS: {sorted(tops - set(LAYERS))}; gone: {sorted(set(LAYERS) - tops)}"


def test_imports_go_down_the_layers(graph):
    up = imports_up(graph)
    assert not up, "imports up the layers (docs/architecture.md): " + ", ".join(up)


def test_the_layer_check_sees_an_import_up():
    g = {"pplaw.io": {"pplaw.pipeline.loop", "pplaw._atomic"}, "pplaw.pipeline.loop": {"pplaw.io"},
         "pplaw.score.job": {"pplaw.train.options"}}  # the same layer is fine
    assert imports_up(g) == ["pplaw.io -> pplaw.pipeline.loop"]
