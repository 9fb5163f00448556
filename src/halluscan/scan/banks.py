"""Which banks a scanner reads, and whether they fit the model.

The exact-answer bank gives the verdict; a study's token-level bank (``probes_tokens/``), when
it has one, colours the activity map from the exact answer's first token on.
"""

from __future__ import annotations

from pathlib import Path

from halluscan.errors import HalluscanError
from halluscan.models.loading import LoadedModel
from halluscan.positions import BANK_POSITION
from halluscan.probes.bank import ProbeBank
from halluscan.provenance import model_identity
from halluscan.records import TOKEN_BANK


def token_bank_of(run: Path) -> ProbeBank | None:
    """A study folder's token-level bank, or None when it has none."""
    folder = Path(run) / TOKEN_BANK
    return ProbeBank.load(folder) if ProbeBank.exists(folder) else None


def check_bank(lm: LoadedModel, bank: ProbeBank) -> None:
    """Refuse a bank of another model, another width, or another position than exact_answer_last."""
    trained_on = bank.meta.get("model")
    if isinstance(trained_on, dict) and model_identity(trained_on) != model_identity(
        lm.provenance()
    ):
        raise HalluscanError(
            f"the probe bank was trained on {trained_on.get('model_id')} but the model is "
            f"{lm.model_id}; use the bank of a study of this model (--probes runs/NAME/probes)"
        )
    fmt = trained_on.get("prompt_format") if isinstance(trained_on, dict) else None
    now = lm.provenance().prompt_format
    if fmt and fmt != now:
        flag = "on" if fmt == "chat template" else "off"
        raise HalluscanError(
            f"the probe bank's study put questions as {fmt!r}, but the model now prompts as "
            f"{now!r}; give --chat-template {flag} as that study did"
        )
    if bank.meta.get("hidden") not in (None, lm.hidden_size):
        raise HalluscanError(
            f"the probe bank was trained on {bank.meta['hidden']}-dim activations but "
            f"{lm.model_id} has {lm.hidden_size}; use the bank of a study of this model (--probes)"
        )
    if bank.position != BANK_POSITION:
        raise HalluscanError(
            f"this probe bank was trained at {bank.position!r}; per-response scoring needs one "
            f"trained at {BANK_POSITION!r} (what `halluscan run` saves in runs/NAME/probes)"
        )
