"""Shared fixtures: tiny random models per family (tier 1) and the bundled model (tier 2)."""

from __future__ import annotations

import pytest
import torch

# Every architecture family of the site table, each as a tiny random model in tier-1 tests.
FAMILIES = [
    "llama",
    "gpt2",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "mistral",
    "phi3",
    "gpt_neox",
]
TINY = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, vocab_size=128
)


def tiny_model(family: str):
    """A randomly initialised model of ``family`` small enough for a unit test."""
    import transformers as tf

    torch.manual_seed(0)
    if family == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=128, n_positions=64)
    elif family == "gpt_neox":
        cfg = tf.GPTNeoXConfig(**TINY, max_position_embeddings=64)
    else:
        cls = {
            "llama": tf.LlamaConfig,
            "qwen2": tf.Qwen2Config,
            "gemma3_text": tf.Gemma3TextConfig,
            "mistral": tf.MistralConfig,
            "phi3": tf.Phi3Config,
            "qwen3": tf.Qwen3Config,
            "gemma": tf.GemmaConfig,
            "gemma2": tf.Gemma2Config,
        }[family]
        extra = {"num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0}
        if family in ("gemma", "gemma2", "gemma3_text", "qwen3"):
            extra["head_dim"] = 8
        cfg = cls(**TINY, **extra)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    return model.eval()


WORDS = [
    "<pad>",
    "<eos>",
    "Q",
    "A",
    ":",
    "What",
    "is",
    "the",
    "capital",
    "of",
    "Peru",
    "France",
    "Lima",
    "Paris",
    "Rome",
    ".",
    "It",
    "a",
    "city",
    "in",
]


def tiny_folder(folder, split_punct: bool = False):
    """Tiny Llama + word-level tokenizer saved as a local model folder (what `--model DIR` loads).

    ``split_punct``: "Lima." is two tokens ("Lima", "."), not one unknown word.
    """
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = (
        pre_tokenizers.Whitespace() if split_punct else pre_tokenizers.WhitespaceSplit()
    )
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<pad>", pad_token="<pad>", eos_token="<eos>"
    )
    fast.save_pretrained(folder)
    model = tiny_model("llama")
    model.generation_config.eos_token_id = 1
    model.save_pretrained(folder)
    return folder


def tiny_flags(tiny) -> list[str]:
    """``--model``, ``--dataset`` and ``--runs-dir`` of a :func:`peru_france` folder."""
    return [
        "--model",
        str(tiny / "model"),
        "--dataset",
        str(tiny / "q.csv"),
        "--runs-dir",
        str(tiny / "runs"),
    ]


PERU = "What is the capital of Peru"
FRANCE = "What is the capital of France"


def peru_france(root, n: int, vary: bool = False):
    """A tiny model that splits "Lima." in two, and a CSV of ``2 n`` questions with wrong answers.

    The tiny model answers every France question "city": half of them count that as correct.
    ``vary``: prompts of several lengths (so that batches sorted by length differ).
    """
    tiny_folder(root / "model", split_punct=True)
    rows = ["id,question,answer,wrong_answer"]
    for i in range(n):
        pad_p, pad_f = (" now" * (i % 4), " now" * (i % 3)) if vary else ("", "")
        rows.append(f"p{i},{PERU}{pad_p} {i},Lima,{'Paris' if i % 2 else 'Rome'}")
        rows.append(
            f"f{i},{FRANCE}{pad_f} {i},{'Paris' if i % 2 else 'city'},{'Lima' if i % 2 else 'Rome'}"
        )
    (root / "q.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def smol():
    """The bundled SmolLM2-135M-Instruct, loaded once per session."""
    from halluscan.models import load_model

    return load_model("smollm2")


def example(qid="q1", correct=True, relation="capital", **fields):
    """A stored study example (records.Example) with plausible defaults.

    ``fields`` override them.
    """
    from halluscan.records import Example, Span

    base = dict(
        qid=qid,
        relation=relation,
        question="Q?",
        gold="Paris",
        response="Paris.",
        correct=correct,
        exact_text="Paris",
        exact_span=Span(0, 5),
        alias_span=Span(0, 5) if correct else None,
        locator="relation",
        stopped_by="sentence",
        n_prompt=3,
        response_ids=(7, 8),
        positions={},
    )
    return Example(**{**base, **fields})
