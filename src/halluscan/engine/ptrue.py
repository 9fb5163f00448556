"""p(True).

Ask the model whether a proposed answer is right, as a two-option question, in both orders.


The reference is LLMsKnow's ``p_true_detection.py`` (Kadavath et al.'s p(True)): the question and
the proposed answer go into a fresh prompt, the options are "(A) True" and "(B) False", and the
probability of the letter of the true option is read from the next-token distribution
(renormalised over the two letters). The same prompt with the options swapped gives the order
effect. The instructions and options come first, so they are the prompt prefix that every row of
a batch shares and runs once; each example adds only its question and answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from halluscan.engine.decode import EagerFeed
from halluscan.models.loading import LoadedModel
from halluscan.records import GenerateOptions

ORDERS = {"true_first": ("True", "False"), "false_first": ("False", "True")}
INSTRUCTION = (
    "You will see a question and a proposed answer. Is the proposed answer:\n(A) {a}\n(B) "
    "{b}\nReply with the letter of the right option only."
)
ITEM = "Question: {question}\nProposed answer: {answer}"


def letters(lm: LoadedModel) -> tuple[int, int]:
    """The token ids of the letters "A" and "B" as a reply starts with them."""
    ids = [lm.tokenizer.encode(x, add_special_tokens=False) for x in ("A", "B")]
    return ids[0][0], ids[1][0]


def prompts(lm: LoadedModel, items: Sequence[tuple[str, str]], order: str) -> list[list[int]]:
    """The p(True) prompt of each (question, proposed answer) with the options in ``order``."""
    a, b = ORDERS[order]
    system = INSTRUCTION.format(a=a, b=b)
    return [lm.prompt_ids(ITEM.format(question=q, answer=ans), system) for q, ans in items]


@torch.inference_mode()
def p_true(
    lm: LoadedModel,
    items: Sequence[tuple[str, str]],
    order: str,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Per (question, proposed answer), the probability the model gives to "true" (``order``)."""
    seqs = prompts(lm, items, order)
    a, b = letters(lm)
    true_index = ORDERS[order].index("True")  # 0: the true option is (A)
    opts = GenerateOptions(tail=1, share_prefix=True)
    out = np.full(len(items), np.nan)
    idx = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    for s in range(0, len(idx), batch_size):
        batch = idx[s : s + batch_size]
        logits = EagerFeed(lm, [seqs[i] for i in batch], opts).prefill().float()
        two = torch.softmax(logits[:, [a, b]], dim=-1)[:, true_index]
        out[batch] = two.cpu().numpy()
        if progress is not None:
            progress(len(batch))
    return out
