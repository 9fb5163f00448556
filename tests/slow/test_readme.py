"""Every command and Python snippet of the README, run as written, on a small size.

The commands are read from the README itself (every ``halluscan ...`` line of a ``bash`` block,
every ``$ halluscan ...`` line of an output block, every ``python`` block), so the README and
this test cannot drift apart: a new line is run, or it must be named in ``SKIP`` with the reason
it cannot run here. Placeholders are made real in the working folder (``my.csv``,
``./local-hf-folder``, ``path/to/model.gguf``, ``runs/a``...), so each line runs as written;
only the size is made small, by flags appended after the line's own (argparse keeps the last).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from halluscan.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Lines that cannot run here, by how they start, and why.
LLMSKNOW = "needs the LLMsKnow files (`halluscan data fetch`: the network, which CI lacks)"
SKIP = {
    "halluscan data fetch llmsknow": "downloads the LLMsKnow files: needs the network",
    "halluscan run --dataset winobias": LLMSKNOW,
    "halluscan suite --name paper": LLMSKNOW,
    "halluscan suite --name grid": LLMSKNOW,
    "halluscan run --name winobias --dataset winobias": LLMSKNOW,
    "halluscan probe --train runs/demo --test runs/winobias": "needs the winobias run above",
    "halluscan run --ray HEAD:6379": "needs a Ray cluster of GPU nodes",
    "halluscan serve": "serves until interrupted; tests/test_serve.py drives it in Chromium",
}
# The size, made small: appended to each command's own flags (the last flag wins).
SMALL = {
    "run": ["--n-questions", "40", "--folds", "2", "--max-new-tokens", "12", "--workers", "1"],
    "choose": ["--questions", "10", "--samples", "2"],
    "audit": ["--n", "10"],
    "detect": ["--folds", "2", "--epochs", "2"],
}
# ... and in the Python snippets (each text must be found, so a changed snippet is seen).
SMALL_PY = {
    "StudyConfig(n_questions=300, ": "StudyConfig(n_questions=40, folds=2, max_new_tokens=12, "
}


def readme_items() -> list[tuple[int, str, str]]:
    """``(line, kind, text)`` in README order: kind ``cli`` (a command) or ``py`` (a block)."""
    items, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        lang, start, body = fence.group(1), i + 1, []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if lang == "python":
            items.append((start + 1, "py", "\n".join(body)))
            continue
        k = 0
        while k < len(body):
            line, at = body[k], start + k + 1
            while line.endswith("\\"):  # a continued command
                k += 1
                line = line[:-1] + " " + body[k].strip()
            k += 1
            cmd = line[2:] if line.startswith("$ ") else line if lang == "bash" else ""
            if cmd.startswith("halluscan "):
                items.append((at, "cli", cmd))
    return items


def skipped(cmd: str) -> str | None:
    return next((why for start, why in SKIP.items() if cmd.startswith(start)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working folder holding what the README's placeholders name."""
    from halluscan.models.loading import bundled_gguf
    from tests.conftest import tiny_folder

    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", d / "examples")
    shutil.copy(ROOT / "examples" / "study.yaml", d / "study.yaml")
    (d / "path" / "to").mkdir(parents=True)
    (d / "path" / "to" / "model.gguf").symlink_to(bundled_gguf("smollm2"))
    tiny_folder(d / "local-hf-folder")
    caps = [("Peru", "Lima"), ("Chile", "Santiago"), ("Kenya", "Nairobi"), ("Japan", "Tokyo")]
    caps += [("Egypt", "Cairo"), ("Norway", "Oslo"), ("Canada", "Ottawa"), ("Ghana", "Accra")]
    caps += [("Spain", "Madrid"), ("Nepal", "Kathmandu"), ("Cuba", "Havana"), ("Iran", "Tehran")]
    rows = [f"Name the capital city of {c}.,{a}" for c, a in caps]
    rows += [f"Which country has {a} as its capital?,{c}" for c, a in caps]
    (d / "my.csv").write_text("question,answer\n" + "\n".join(rows) + "\n")
    pairs = (ROOT / "examples" / "true_false.jsonl").read_text().splitlines()[:6]
    (d / "answers.jsonl").write_text("\n".join(pairs) + "\n")
    (d / "runs").mkdir()
    for link, run in (("a", "demo"), ("b", "mine"), ("c", "seed1")):  # runs/a, b, c of the README
        (d / "runs" / link).symlink_to(run)
    return d


def run_cli(cmd: str, cwd: Path) -> None:
    argv = shlex.split(cmd, comments=True)[1:]
    argv += SMALL.get(argv[0], [])
    if "--ray" in argv:  # Ray starts its own processes: run it as a user would, in a shell
        if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
            pytest.skip("Ray is not installed (pip install 'halluscan[ray]')")
        exe = str(Path(sys.executable).parent / "halluscan")
        out = subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{cmd}\n{out.stderr[-3000:]}"
        return
    assert main(argv) == 0, cmd


def test_the_readme_names_every_line_it_cannot_run():
    items = readme_items()
    commands = [text for _, kind, text in items if kind == "cli"]
    assert len(commands) >= 15 and sum(kind == "py" for _, kind, _ in items) >= 3
    stale = [s for s in SKIP if not any(c.startswith(s) for c in commands)]
    assert not stale, f"SKIP names lines the README no longer has: {stale}"
    py = "\n".join(text for _, kind, text in items if kind == "py")
    assert all(old in py for old in SMALL_PY), "a snippet SMALL_PY shrinks has changed"


def test_every_readme_command_and_snippet_works_as_written(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HALLUSCAN_PROGRESS", "off")
    ran = []
    for line, kind, text in readme_items():
        if kind == "cli":
            if skipped(text):
                continue
            run_cli(text, workdir)
        else:
            for old, new in SMALL_PY.items():
                text = text.replace(old, new)
            exec(compile(text, f"README.md:{line}", "exec"), {"__name__": "readme"})
        ran.append(line)
        capsys.readouterr()
    assert (workdir / "runs" / "demo" / "report.html").is_file()
    assert (workdir / "runs" / "local-hf-folder-world-facts" / "metrics.json").is_file()
    assert json.loads((workdir / "runs" / "mine" / "metrics.json").read_text())["name"] == "mine"
    assert list((workdir / "runs" / "score").iterdir())  # score's own dated folders
    assert (workdir / "figs").is_dir() and (workdir / "my_store" / "manifest.json").is_file()
    assert len(ran) >= 15
    assert os.environ.get("HALLUSCAN_PROGRESS") == "off"
