"""The package's shape: stage folders in a fixed order, no import cycles, short files, one run-folder owner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "halluscan"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

# Lower ranks are imported by higher ones, never the other way; a folder is one rank.
RANK = {
    "errors": 0,
    "text": 0,
    "records": 0,
    "provenance": 0,
    "atomic": 1,
    "positions": 1,
    "config": 2,
    "data": 3,
    "models": 3,
    "grade": 3,
    "settings": 4,
    "engine": 5,
    "runs": 6,
    "probes": 7,
    "scan": 8,
    "analysis": 8,
    "baselines": 8,
    "errortypes": 8,
    "cluster": 8,
    "report": 9,
    "givenbank": 9,
    "pipeline": 10,
    "choice": 10,
    "suite": 10.5,
    "cli": 11,
}
RUN_FOLDER_NAMES = {
    "store",
    "probes",
    "responses",
    "metrics.json",
    "provenance.json",
    "report.html",
    "heatmap.png",
    "heatmap.html",
    "answer_choice.json",
    "store_given",
    "probes_given",
    "heatmap_given.png",
    "suite.json",
    "suite.html",
}


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__)."""
    out = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = ["halluscan", *f.relative_to(SRC).with_suffix("").parts]
        if parts[-1] in ("__init__", "__main__"):
            parts = parts[:-1] if parts[-1] == "__init__" else parts
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (lazy and TYPE_CHECKING imports included)."""
    got = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            got |= {a.name for a in node.names if a.name.startswith("halluscan")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("halluscan"):
            for a in node.names:  # `from halluscan import runs` imports the module halluscan.runs
                sub = f"{node.module}.{a.name}"
                got.add(sub if sub in known else node.module)
    return got - {name}


def rank(mod: str) -> tuple[str, int]:
    top = mod.split(".")[1]
    return top, RANK[top]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items() if m != "halluscan"}


def test_every_module_has_a_rank(graph):
    assert {m.split(".")[1] for m in graph} == set(RANK)


def test_imports_only_go_down_or_stay_in_their_folder(graph):
    bad = []
    for mod, deps in graph.items():
        group, r = rank(mod)
        for dep in deps:
            if dep == "halluscan":
                bad.append(f"{mod} imports the package root (import the module itself)")
                continue
            g, rd = rank(dep)
            if g != group and rd >= r:
                bad.append(f"{mod} (rank {r}) imports {dep} (rank {rd})")
    assert bad == []


def test_no_import_cycles(graph):
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(d) :], d]))
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_file_over_300_lines():
    long = {str(f.relative_to(SRC)): n for f in SRC.rglob("*.py") if (n := len(f.read_text().splitlines())) > 300}
    assert long == {}


def _text(node: ast.AST) -> str | None:
    """The string a path is joined with (``/ "metrics.json"`` or ``/ f"..."``'s constant part)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def test_only_runs_knows_the_run_folder_layout():
    offenders = []
    for f in [*SRC.rglob("*.py"), *BENCH.glob("*.py")]:
        if f == SRC / "runs.py":
            continue
        text = f.read_text()
        nodes = list(ast.walk(ast.parse(text)))
        consts = {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        joined = {_text(n.right) for n in nodes if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)}
        offenders += [f"{f.name}: / {c!r}" for c in joined & RUN_FOLDER_NAMES]
        offenders += [f"{f.name}: {c!r}" for c in consts if re.match(r"runs/", c)]
        if f.parent == SRC and f.name != "config.py" and ".runs_dir" in text:
            offenders.append(f"{f.name}: reads runs_dir")
        if f != SRC / "engine" / "store.py" and re.search(r"\.m\[|\._manifest", text):
            offenders.append(f"{f.name}: reads the store's raw manifest")
    assert offenders == []
