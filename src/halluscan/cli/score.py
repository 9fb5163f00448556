"""``halluscan score``: one answer (given, or generated first) or a file of them, token by token."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from halluscan.errors import HalluscanError


def default_bank(model: str, runs_dir: str, quiet: bool) -> Path:
    """The probe bank of the default study for ``model``; runs that study first when there is none."""
    from halluscan import pipeline
    from halluscan.probes.bank import ProbeBank
    from halluscan.runs import RunDir, default_study

    cfg = default_study(model, runs_dir, quiet)
    folder = RunDir.of(cfg).probes
    if not ProbeBank.exists(folder):
        print(
            f"halluscan: no probe bank at {folder}; running the default study for {model} first "
            f"(`halluscan run --name {cfg.name}`, a few minutes on the bundled model)",
            file=sys.stderr,
        )
        pipeline.run_study(cfg)
    return folder


def _read_answers(path: str) -> list[dict[str, Any]]:
    """Rows of {question, answer?, relation?, id?} from a JSONL or CSV file, checked."""
    from halluscan.data import read_table

    rows = read_table(path, required=("question",))
    for i, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise HalluscanError(f'{path}: row {i} needs a non-empty "question" string (and optionally "answer")')
        for key in ("answer", "relation"):
            if row.get(key) not in (None, "") and not isinstance(row[key], str):
                raise HalluscanError(f'{path}: row {i}: "{key}" must be a string')
    return rows


def _query(text: str) -> int | None:
    try:
        return None if text == "later" else int(text)
    except ValueError:
        raise HalluscanError(
            f"--query {text!r}: give 'later' (mean over later tokens) or a token index such as -1"
        ) from None


def cmd_score(args: argparse.Namespace) -> int:
    """Score one answer (given, or generated first) or a JSONL of them; write score.json and figures."""
    from halluscan.models import load_model
    from halluscan.probes.bank import ProbeBank
    from halluscan.scan import Scanner

    if args.question is None and not args.jsonl:
        raise HalluscanError("score: give --question Q (with --answer A to score a given answer) or --jsonl FILE")
    if args.question is not None and not args.question.strip():
        raise HalluscanError("score: --question is blank; give the question's text")
    if args.answer is not None and not args.answer.strip():
        raise HalluscanError("score: --answer is blank; give the text to score (or leave --answer out to generate one)")
    rows = _read_answers(args.jsonl) if args.jsonl else None
    bank = ProbeBank.load(args.probes or default_bank(args.model, args.runs_dir, args.quiet))
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    scanner = Scanner(lm, bank, layer=args.layer, standardise=args.standardise, query=_query(args.query))
    out = Path(args.out)  # created by the first write: a failed score leaves no empty folder
    if rows is not None:
        return _score_file(scanner, rows, out, args.quiet)
    return _score_one(scanner, args, out)


def _score_file(scanner: Any, rows: list[dict[str, Any]], out: Path, quiet: bool) -> int:
    """Given answers in batches, then the rows without one (generated); writes ``scores.jsonl``."""
    from tqdm import tqdm

    from halluscan import atomic

    given = [(i, r) for i, r in enumerate(rows) if (r.get("answer") or "").strip()]
    results: list[Any] = [None] * len(rows)
    bar = tqdm(total=len(rows), desc="score", unit="answer", disable=quiet)
    tok = scanner.lm.tokenizer
    items = [
        (r["question"], tok(r["answer"], add_special_tokens=False).input_ids, (r.get("relation") or "custom"))
        for _, r in given
    ]
    for (i, _), scored in zip(given, scanner.score_many(items, progress=bar.update), strict=True):
        results[i] = scored
    for i, r in enumerate(rows):
        if results[i] is None:
            results[i] = scanner.score(r["question"], relation=(r.get("relation") or "custom"))
            bar.update(1)
    bar.close()
    lines = [
        json.dumps({"id": r.get("id", i), **scored.to_json()})
        for i, (r, scored) in enumerate(zip(rows, results, strict=True))
    ]
    atomic.write_text(out / "scores.jsonl", "\n".join(lines) + "\n")
    n_wrong = sum(scored.verdict == "hallucinated" for scored in results)
    print(f"scored {len(rows)} answers: {n_wrong} flagged hallucinated; wrote {out / 'scores.jsonl'}")
    return 0


def _score_one(scanner: Any, args: argparse.Namespace, out: Path) -> int:
    """One answer: ``score.json``, the activity surface and the attention heatmap."""
    from halluscan import atomic
    from halluscan.report import figures

    if args.stream and args.answer is None:
        ids = []
        for step in scanner.stream(args.question):
            ids.append(step.token_id)
            print(f"{step.token:>16}  p(wrong) {step.p_wrong:.2f}", flush=True)
        result = scanner.score_ids(args.question, ids, relation=args.relation, generated=True)
    else:
        result = scanner.score(args.question, args.answer, relation=args.relation)
    atomic.write_json(out / "score.json", result.to_json())
    files = figures.activity_files([result], out) + figures.attention_files(result, out)
    where = f"at {result.exact_answer!r}" if result.exact_answer else "at the last token (no exact answer found)"
    print(f"answer: {result.response}")
    print(f"verdict: {result.verdict} (p_wrong {result.p_wrong:.3f}; probe layer {result.verdict_layer} {where})")
    print(f"wrote {out / 'score.json'}, " + ", ".join(str(f) for f in files))
    return 0
