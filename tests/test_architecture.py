"""The package's shape.

A kernel, wings that import only down, pure maths, short functions, one run-folder owner.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "halluscan"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

KERNEL = ("errors", "text", "records", "atomic", "provenance", "positions", "progress")
# A package imports only packages of a lower rank (and the kernel); packages of one rank never
# import each other.
RANK = {
    **dict.fromkeys(KERNEL, 0),
    "data": 1,
    "grade": 1,
    "models": 1,
    "store": 1,
    "probes": 1,
    "analyses": 2,
    "engine": 2,
    "report": 3,
    "scan": 3,
    "cluster": 3,
    "study": 4,
    "serve": 5,
    "cli": 6,
}
# Maths on arrays and records: no disk, no model, no study plumbing (the kernel's atomic writer
# aside,
# which the probe bank uses to save itself).
PURE = ("probes", "analyses")
NOT_IN_PURE = ("store", "study", "models", "engine", "cluster", "scan", "report", "data")
MAX_FUNCTION_LINES = 60
LONG_OK = "# long:"  # a function may pass the cap when its def line says why, after this marker


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
    """Modules of the package that ``name`` imports anywhere (lazy and TYPE_CHECKING ones too)."""
    got = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            got |= {a.name for a in node.names if a.name.startswith("halluscan")}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("halluscan")
        ):
            # `from halluscan.study import runs` imports the module halluscan.study.runs
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                got.add(sub if sub in known else node.module)
    return got - {name}


def package(mod: str) -> str:
    """The top-level package (or kernel module) of a dotted module name."""
    return mod.split(".")[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items() if m != "halluscan"}


def rank_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up, sideways between packages, or from the pure maths to I/O."""
    bad = []
    for mod, deps in graph.items():
        top = package(mod)
        for dep in sorted(deps):
            if dep == "halluscan":
                bad.append(f"{mod} imports the package root (import the module itself)")
                continue
            other = package(dep)
            if top in PURE and other in NOT_IN_PURE:
                bad.append(f"{mod} is pure maths but imports {dep}")
            elif other != top and RANK[other] >= RANK[top] and not (RANK[top] == 0 == RANK[other]):
                bad.append(f"{mod} (rank {RANK[top]}) imports {dep} (rank {RANK[other]})")
    return bad


def test_every_package_has_a_rank(graph):
    assert {package(m) for m in graph} == set(RANK)


def test_imports_only_go_down(graph):
    assert rank_violations(graph) == []


@pytest.mark.parametrize(
    ("mod", "dep"),
    [
        ("halluscan.probes.sweep", "halluscan.store.store"),
        ("halluscan.probes.bank", "halluscan.study.runs"),
        ("halluscan.probes.bank", "halluscan.study.config"),
        ("halluscan.probes.transfer", "halluscan.models.loading"),
        ("halluscan.analyses.baselines", "halluscan.engine.ptrue"),
        ("halluscan.report.html", "halluscan.scan.scanner"),
        ("halluscan.engine.collect", "halluscan.scan.scanner"),
    ],
)
def test_the_rule_catches_a_planted_import(graph, mod, dep):
    """It fails when the maths reaches the disk or the model, or a wing imports a peer or caller."""
    planted = {**graph, mod: graph[mod] | {dep}}
    assert any(v.startswith(mod) and dep in v for v in rank_violations(planted))


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


def test_functions_are_short():
    """At most 60 lines a function; a longer one says why on its def line (``# long: ...``)."""
    long = []
    for f in SRC.rglob("*.py"):
        lines = f.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES and LONG_OK not in lines[node.lineno - 1]:
                    long.append(f"{f.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_files_stay_readable():
    """No file over 400 lines, no line over 100 characters (here for every line, not just code)."""
    big = {
        str(f.relative_to(SRC)): n
        for f in SRC.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 400
    }
    wide = [
        f"{f.relative_to(SRC)}:{i}"
        for f in SRC.rglob("*.py")
        for i, line in enumerate(f.read_text().splitlines(), start=1)
        if len(line) > 100
    ]
    assert big == {} and wide == []


def _text(node: ast.AST) -> str | None:
    """The string a path is joined with (``/ "metrics.json"`` or ``/ f"..."``'s constant part)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def test_only_runs_knows_the_run_folder_layout():
    from halluscan.study.runs import LAYOUT

    names = set(LAYOUT.values())
    owner = SRC / "study" / "runs.py"
    offenders = []
    for f in [*SRC.rglob("*.py"), *BENCH.glob("*.py")]:
        if f == owner:
            continue
        text = f.read_text()
        nodes = list(ast.walk(ast.parse(text)))
        consts = {
            n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        joined = {
            _text(n.right) for n in nodes if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
        }
        offenders += [f"{f.name}: / {c!r}" for c in joined & names]
        offenders += [f"{f.name}: {c!r}" for c in consts if re.match(r"runs/", c)]
        if f != SRC / "store" / "store.py" and re.search(r"\.m\[|\._manifest", text):
            offenders.append(f"{f.name}: reads the store's raw manifest")
    assert offenders == []


def test_no_literal_site_names_outside_the_site_table():
    table = SRC / "models" / "sites.py"
    found = []
    for f in SRC.rglob("*.py"):
        if f == table:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and node.value in (
                "residual",
                "mlp",
                "attn",
                "attn_weights",
            ):
                found.append(f"{f.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert found == []


def test_metrics_json_has_one_writer():
    """Only the metrics owner writes metrics.json.

    No other module names the file or builds its dict.
    """
    owner = SRC / "study" / "metrics.py"
    writers = [
        str(f.relative_to(SRC))
        for f in SRC.rglob("*.py")
        if f != owner and re.search(r"write_json\([^)]*\.metrics\b", f.read_text())
    ]
    assert writers == []
