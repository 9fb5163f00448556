"""``halluscan score``: one answer (given, or generated first) or a file of them, token by token."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from halluscan import progress
from halluscan.errors import HalluscanError
from halluscan.records import RUN_BANKS, JsonObject, ToScore, bank_kind
from halluscan.study.config import StudyConfig
from halluscan.study.runs import RUNS_DIR

BANKS = ("auto", "own", "given")


def default_bank(model: str, runs_dir: str, kind: str = "own") -> Path:
    """The ``kind`` probe bank (own or given) of ``model``'s default study.

    That is the study ``halluscan run --model MODEL`` writes. A missing one is refused with the
    command that makes it: scoring never starts a study by itself.
    """
    from halluscan.probes.bank import ProbeBank
    from halluscan.study.runs import RunDir, default_study

    cfg = default_study(model, runs_dir)
    run = RunDir.named(cfg.name, cfg.runs_dir)
    folder = run.probes_given if kind == "given" else run.probes
    if not ProbeBank.exists(folder):
        what = "given-answer" if kind == "given" else "own-answer"
        model_flag = "" if model == StudyConfig.model else f" --model {model}"
        dir_flag = "" if runs_dir == RUNS_DIR else f" --runs-dir {runs_dir}"
        raise HalluscanError(
            f"no {what} bank at {folder}: run the default study first (`halluscan run"
            f"{model_flag}{dir_flag}`, a few minutes on the bundled model on 2 CPU cores), or "
            "give --probes FOLDER"
        )
    return folder


def _bank_kind(args: argparse.Namespace, given_answer: bool) -> str:
    """Which bank scores.

    ``--bank``, else the given-answer bank for a given answer and the own for a generated one.
    """
    if args.bank not in BANKS:
        raise HalluscanError(f"--bank {args.bank!r}: give own, given or auto")
    return args.bank if args.bank != "auto" else bank_kind(given_answer)


def _scanner(args: argparse.Namespace, lm: Any, kind: str) -> Any:
    """A scanner with the chosen bank: ``--probes``, else the default study's ``kind`` bank."""
    from halluscan.probes.bank import ProbeBank
    from halluscan.scan import Scanner
    from halluscan.scan.banks import token_bank_of

    folder = bank_folder(args, kind)
    bank = ProbeBank.load(folder)
    scanner = Scanner(
        lm,
        bank,
        layer=args.layer,
        standardise=args.standardise,
        query=_query(args.query),
        tokens=token_bank_of(folder.parent),  # the study's token-level bank, when it has one
    )
    print(bank_line(bank.meta, bank.position, scanner.layer))
    return scanner


def bank_folder(args: argparse.Namespace, kind: str) -> Path:
    """The folder of the bank that scores ``kind`` answers; a missing one refused in one line.

    ``--probes`` names a bank, or a study folder (then its ``kind`` bank); else the default study's.
    """
    from halluscan.probes.bank import ProbeBank

    if not args.probes:
        return default_bank(args.model, args.runs_dir, kind)
    given = Path(args.probes)
    for folder in (given, given / RUN_BANKS[kind]):
        if ProbeBank.exists(folder):
            return folder
    raise HalluscanError(
        f"--probes {given}: no probe bank there (nor a study folder with a {kind}-answer bank in "
        f"{RUN_BANKS[kind]}/); give runs/NAME of a finished `halluscan run`, or its probes folder"
    )


def bank_line(meta: JsonObject, position: str, layer: int) -> str:
    """Which cell scores, and how well it did where it was trained (not where it is used)."""
    data = meta.get("dataset") or {}
    name = data.get("name", "its study's data") if isinstance(data, dict) else str(data)
    line = f"probe: {meta.get('kind', 'own')}-answer bank at {position} layer {layer}, trained on "
    line += f"{name} ({meta.get('n_train', '?')} answers)"
    auc, ci = meta.get("train_auc"), meta.get("train_auc_ci95")
    if auc is None or layer != meta.get("best_layer"):
        return line + "; no cross-validated AUC recorded for this layer"
    lo, hi = ci if isinstance(ci, list) and len(ci) == 2 else (float("nan"), float("nan"))
    return line + (
        f"; cross-validated AUC there {auc:.3f} ({lo:.3f}–{hi:.3f}) on {name}, the best of its "
        "layers: on other data it can be far lower (`halluscan probe --train RUN --test OTHER`)"
    )


def _read_answers(path: str) -> list[JsonObject]:
    """Rows of {question, answer?, relation?, id?} from a JSONL or CSV file, checked."""
    from halluscan.data import read_table

    rows = read_table(path, required=("question",))
    for i, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise HalluscanError(
                f'{path}: row {i} needs a non-empty "question" string (and optionally "answer")'
            )
        for key in ("answer", "relation"):
            if row.get(key) not in (None, "") and not isinstance(row[key], str):
                raise HalluscanError(f'{path}: row {i}: "{key}" must be a string')
        if row.get("label") not in (None, ""):
            row["label"] = _label(path, i, row)
    return rows


_LABELS = {"true": True, "1": True, "false": False, "0": False}


def _label(path: str, i: int, row: JsonObject) -> bool:
    """A row's ``label`` (is the given answer true?) as a bool."""
    raw = str(row["label"]).strip().lower()
    if raw not in _LABELS:
        raise HalluscanError(
            f'{path}: row {i}: "label" is {row["label"]!r}; give true/false or 1/0 (1 = true)'
        )
    if not (row.get("answer") or "").strip():
        raise HalluscanError(
            f'{path}: row {i} has a "label" but no "answer"; a label says whether a given answer '
            "is true"
        )
    return _LABELS[raw]


def _query(text: str) -> int | None:
    try:
        return None if text == "later" else int(text)
    except ValueError:
        raise HalluscanError(
            f"--query {text!r}: give 'later' (mean over later tokens) or a token index such as -1"
        ) from None


def cmd_score(args: argparse.Namespace) -> int:
    """Score one answer (given, or generated first) or a JSONL of them.

    Write score.json and figures.
    """
    from halluscan.models.loading import load_as

    if args.question is None and not args.jsonl:
        raise HalluscanError(
            "score: give --question Q (with --answer A to score a given answer) or --jsonl FILE"
        )
    if args.question is not None and not args.question.strip():
        raise HalluscanError("score: --question is blank; give the question's text")
    if args.answer is not None and not args.answer.strip():
        raise HalluscanError(
            "score: --answer is blank; give the text to score (or leave --answer out to generate "
            "one)"
        )
    rows = _read_answers(args.jsonl) if args.jsonl else None
    _bank_kind(args, True)  # a bad --bank fails before the model loads
    out = out_folder(args.out, args.runs_dir)  # checked now: created by the first write
    for kind in _kinds(args, rows):  # every bank it will need exists, before the model loads
        bank_folder(args, kind)
    if args.detector:  # a missing detector is refused before the model loads
        from halluscan.probes.tensor import load_detector

        args.loaded_detector = load_detector(args.detector)
    lm = load_as(args)
    if rows is not None:
        return _score_file(args, lm, rows, out)
    return _score_one(_scanner(args, lm, _bank_kind(args, args.answer is not None)), args, out)


def _kinds(args: argparse.Namespace, rows: list[JsonObject] | None) -> set[str]:
    """The banks a score will read: by what it is given (see :func:`_bank_kind`)."""
    if rows is None:
        return {_bank_kind(args, args.answer is not None)}
    return {_bank_kind(args, bool((r.get("answer") or "").strip())) for r in rows}


SHOWN = 300  # characters of an answer printed on stdout (score.json holds it whole)


def clip(text: str) -> str:
    """An answer for the terminal: whole when short, else its start and how long it is."""
    if len(text) <= SHOWN:
        return text
    return f"{text[:SHOWN]}… ({len(text):,} characters; the whole answer is in score.json)"


def out_folder(out: str | None, runs_dir: str) -> Path:
    """Where ``score`` writes: ``--out``, else a new ``RUNS_DIR/score/DATE-TIME`` folder.

    Refuses, before any scoring, a folder that cannot be written (the nearest existing folder
    above it is read-only, or it is a file). Nothing is created here.
    """
    import os
    import time

    if out is None:
        base = Path(runs_dir) / "score" / time.strftime("%Y-%m-%d_%H-%M-%S")
        path, k = base, 1
        while path.exists():  # two scores in one second: each its own folder
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    else:
        path = Path(out)
    if path.exists() and not path.is_dir():
        raise HalluscanError(f"--out {path}: a file, not a folder; give a folder to write into")
    above = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(above, os.W_OK | os.X_OK):
        raise HalluscanError(
            f"--out {path}: {above} is not writable; give a folder you can write (--out DIR)"
        )
    return path


def _score_file(args: argparse.Namespace, lm: Any, rows: list[JsonObject], out: Path) -> int:
    """Given answers in batches, then the rows without one (generated); writes ``scores.jsonl``.

    With ``label`` on the given answers it also prints and writes (``summary.json``) the AUC of
    ``p_wrong`` for false vs true answers, with a 95 % interval, and the verdicts' accuracy.
    """
    from halluscan import atomic

    results, banks = _score_rows(args, lm, rows)
    lines = [
        json.dumps(
            {
                "id": r.get("id", i),
                **({"label": r["label"]} if "label" in r else {}),
                **scored.to_json(),
            }
        )
        for i, (r, scored) in enumerate(zip(rows, results, strict=True))
    ]
    atomic.write_text(out / "scores.jsonl", "\n".join(lines) + "\n")
    n_wrong = sum(scored.verdict == "hallucinated" for scored in results)
    print(
        f"scored {len(rows)} answers ({' + '.join(sorted(banks))} bank): {n_wrong} "
        f"flagged hallucinated; wrote {out / 'scores.jsonl'}"
    )
    pairs = zip(rows, results, strict=True)
    labelled = [(r, s) for r, s in pairs if isinstance(r.get("label"), bool)]
    if labelled:
        _labelled_summary(labelled, out)
    return 0


def _score_rows(
    args: argparse.Namespace, lm: Any, rows: list[JsonObject]
) -> tuple[list[Any], set[str]]:
    """Every row scored (given answers in batches, the rest generated first); the banks used."""
    given = [(i, r) for i, r in enumerate(rows) if (r.get("answer") or "").strip()]
    results: list[Any] = [None] * len(rows)
    banks: set[str] = set()
    bar = progress.bar(len(rows), "score", "answer", args.quiet)
    if given:
        scanner = _scanner(args, lm, _bank_kind(args, True))
        banks.add(scanner.kind)
        tok = lm.tokenizer
        items = [
            ToScore(
                r["question"],
                tok(r["answer"], add_special_tokens=False).input_ids,
                r.get("relation") or "custom",
            )
            for _, r in given
        ]
        for (i, _), scored in zip(
            given, scanner.score_many(items, progress=bar.update), strict=True
        ):
            results[i] = scored
    if len(given) < len(rows):
        scanner = _scanner(args, lm, _bank_kind(args, False))
        banks.add(scanner.kind)
        for i, r in enumerate(rows):
            if results[i] is None:
                results[i] = scanner.score(r["question"], relation=(r.get("relation") or "custom"))
                bar.update(1)
    bar.close()
    return results, banks


def _labelled_summary(labelled: list[tuple[JsonObject, Any]], out: Path) -> None:
    """AUC (95 % interval, resampling questions) and verdict accuracy on labelled given answers."""
    import numpy as np

    from halluscan import atomic
    from halluscan.probes.sweep import bootstrap_auc

    false = np.array([not r["label"] for r, _ in labelled], dtype=np.int64)
    p = np.array([s.p_wrong for _, s in labelled])
    auc, ci = bootstrap_auc(p, false, [r["question"] for r, _ in labelled])
    acc = float(
        np.mean(
            [
                (s.verdict == "hallucinated") == bool(f)
                for (_, s), f in zip(labelled, false, strict=True)
            ]
        )
    )
    summary = {
        "n": len(labelled),
        "n_false": int(false.sum()),
        "auc": auc,
        "ci95": ci,
        "verdict_accuracy": acc,
        "bank": sorted({s.bank for _, s in labelled}),
    }
    atomic.write_json(out / "summary.json", summary)
    lo, hi = ("nan", "nan") if ci is None else (f"{ci[0]:.3f}", f"{ci[1]:.3f}")
    print(
        f"labelled answers: {len(labelled)} ({summary['n_false']} false); AUC of p_wrong {auc:.3f} "
        f"(95 % CI {lo} – {hi}); verdict accuracy {acc:.3f}; wrote {out / 'summary.json'}"
    )


def _score_one(scanner: Any, args: argparse.Namespace, out: Path) -> int:
    """One answer: ``score.json``, the activity surface and the attention heatmap."""
    from halluscan import atomic
    from halluscan.report import figures

    if args.stream and args.answer is None:
        ids = []
        for step in scanner.stream(args.question):
            ids.append(step.token_id)
            p = (
                "—  (before the answer: not read)"
                if step.p_wrong != step.p_wrong
                else f"{step.p_wrong:.2f}"
            )
            print(f"{step.token:>16}  p(wrong) {p}", flush=True)
        result = scanner.score_ids(args.question, ids, relation=args.relation, generated=True)
    else:
        result = scanner.score(args.question, args.answer, relation=args.relation)
    extra = _detector_json(scanner, args, result)
    atomic.write_json(out / "score.json", result.to_json() | extra)
    files = figures.activity_files([result], out) + figures.attention_files(result, out)
    where = (
        f"at {result.exact_answer!r}"
        if result.exact_answer
        else "at the last token (no exact answer found)"
    )
    print(f"answer: {clip(result.response)}")
    bank = result.bank
    print(
        f"verdict: {result.verdict} (p_wrong {result.p_wrong:.3f}; {bank}-answer bank, probe layer "
        f"{result.verdict_layer} {where})"
    )
    if extra:
        d = extra["detector"]
        print(
            f"whole-tensor detector ({args.detector}, trained on {', '.join(d['trained_on'])}): "
            f"p_wrong {d['p_wrong']:.3f}, read at {len(d['positions_read'])} positions"
        )
    names = ", ".join(Path(f).name for f in [out / "score.json", *files])
    print(f"wrote {out}/: {names}")
    return 0


def _detector_json(scanner: Any, args: argparse.Namespace, result: Any) -> JsonObject:
    """``{"detector": ...}`` with ``--detector``: its verdict on the scored answer; else ``{}``."""
    from dataclasses import asdict

    from halluscan.scan.detector import detector_verdict

    if not getattr(args, "loaded_detector", None):
        return {}
    det, meta = args.loaded_detector
    v = detector_verdict(scanner, det, meta, result, args.relation)
    return {"detector": {"folder": str(args.detector), **asdict(v)}}
