"""The headline: the nested probe against the strongest cheap control, and what a reader must know.

The headline cell is the one nested cross-validation picks (:mod:`.nested`); its AUC is set
against every control and baseline on the same test examples (:mod:`.controls`), and the
headline gain is the one over the strongest of them. Warnings say when the locator's rule alone
predicts the label, and which token a position past the answer usually is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from halluscan.analyses.controls import Compared
from halluscan.analyses.nested import Nested
from halluscan.analyses.summary import OMIT, Interval, class_counts
from halluscan.positions import NEGATIVE, Cell
from halluscan.records import Example

LAST_Q = "last_q probe (layer chosen inside)"  # compared, but not a cheap control
RULE_ALONE, RULE_WARNING = "rule", 0.6  # warn when the rule's interval passes this
PAST_ANSWER = ("exact_answer_after_last", *NEGATIVE)  # positions that are not the answer itself


@dataclass(frozen=True)
class Headline:
    """The nested probe cell, the strongest control on the same examples, and the gain over it."""

    position: str  # the cell the outer folds picked most often
    layer: int
    auc: float | None  # nested: each outer fold's pick, scored on that fold
    ci95: Interval | None
    n: int  # test answers scored over the outer folds
    n_wrong: int
    left_out: dict[str, int]  # class -> answers without the position (not scored)
    strongest: str  # the strongest control or baseline
    strongest_auc: float | None
    strongest_ci95: Interval | None
    gain: float | None  # nested AUC minus the strongest's, paired over folds
    gain_ci95: Interval | None
    clear: bool  # the gain's interval clears zero: the probe beats every cheap signal
    n_cells: int  # the cells each fold chose among
    max_auc: float | None  # the heatmap's maximum over those cells: optimistic
    max_cell: Cell | None = None
    token: str | None = field(
        default=None, metadata=OMIT
    )  # the usual token at a past-answer position
    # of the answers scored, those with no located exact answer, read at their last answer token
    read_at_fallback: dict[str, int] | None = field(default=None, metadata=OMIT)


def strongest(versus: dict[str, Compared]) -> str | None:
    """The compared signal with the highest AUC (the last_q probe aside: it is no cheap signal)."""
    scored = {k: v.auc for k, v in versus.items() if k != LAST_Q and v.auc is not None}
    return max(scored, key=lambda k: scored[k]) if scored else None


def usual_token(examples: Sequence[Example], position: str) -> str | None:
    """The most common text of the token at ``position`` (a past-answer one), with its share."""
    if position not in PAST_ANSWER:
        return None
    texts = []
    for e in examples:
        k = e.positions.get(position)
        if k is None:
            continue
        t = k - e.n_prompt
        if 0 <= t < len(e.token_starts):
            end = e.token_starts[t + 1] if t + 1 < len(e.token_starts) else len(e.response)
            texts.append(repr(e.response[e.token_starts[t] : end]))
        else:
            texts.append("a prompt token")
    if not texts:
        return None
    text, n = Counter(texts).most_common(1)[0]
    return f"{text} ({n / len(texts):.0%} of answers)"


def headline(
    run: Nested,
    versus: dict[str, Compared],
    examples: Sequence[Example],
    heat_max: tuple[float | None, Cell | None],
    probed: Sequence[bool] | None = None,
    scored: Sequence[int] = (),
) -> Headline:
    """The headline of a study from its nested run, its comparisons and its heatmap's maximum.

    ``probed``: which examples the probes may use (ambiguous grades are not); ``scored``: the
    rows the outer folds scored.
    """
    name = strongest(versus) or ""
    top = versus.get(name)
    cell = run.cell
    use = list(probed) if probed is not None else [True] * len(examples)
    absent = [e for e, ok in zip(examples, use, strict=True) if ok and cell.position not in
              {k for k, v in e.positions.items() if v is not None}]  # fmt: skip
    fallback = [examples[i] for i in sorted(set(scored)) if examples[i].exact_fallback]
    return Headline(
        cell.position,
        cell.layer,
        run.auc,
        run.ci95,
        run.n,
        run.n_wrong,
        class_counts(absent),
        name,
        top.auc if top else None,
        top.ci95 if top else None,
        top.gain if top else None,
        top.gain_ci95 if top else None,
        bool(top and top.probe_clear),
        run.n_cells,
        heat_max[0],
        heat_max[1],
        usual_token(examples, cell.position),
        class_counts(fallback),
    )


def warnings(versus: dict[str, Compared], head: Headline) -> list[str]:
    """What the finding box must say besides the numbers."""
    out = []
    rule = versus.get(RULE_ALONE)
    if rule is not None and rule.ci95 is not None and rule.ci95[0] > RULE_WARNING:
        out.append(
            f"the locator's rule alone predicts the label (AUC {rule.auc:.3f}, interval from "
            f"{rule.ci95[0]:.3f}): a probe at the exact answer can learn which rule found it"
        )
    if not head.clear:
        out.append(
            f"the probe does not beat the strongest cheap control ({head.strongest}) with an "
            "interval clear of zero"
        )
    if head.token is not None:
        out.append(f"{head.position} is usually the token {head.token}, past the answer itself")
    return out
