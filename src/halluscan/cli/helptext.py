"""What each subcommand's ``--help`` says first (a description) and last (examples)."""

from __future__ import annotations

HELP: dict[str, tuple[str, str]] = {
    "run": (
        "Run a study: generate answers, grade them, locate their exact answers, extract the "
        "hidden states, probe every (layer, position) cell against every control, and write "
        "RUNS_DIR/NAME/report.html. A run resumes from its store; a store made with another "
        "model, dataset or config is refused (say --name to start another). Config keys are the "
        "flags with underscores (YAML: --config FILE; see examples/study.yaml).",
        """examples:
  halluscan run                                          # the demo: bundled model, world-facts
  halluscan run --dataset winobias --n-questions 300     # another dataset (name from the data)
  halluscan run --model ./my-hf-folder --name mine       # your model, its own run folder
  halluscan run --config examples/study.yaml --seed 1    # YAML, then flags""",
    ),
    "suite": (
        "A study per dataset on one model, and how their probes transfer. Writes "
        "RUNS_DIR/NAME/suite.html and suite.json; finished studies are not run again.",
        """examples:
  halluscan suite --name paper --datasets world-facts winobias --n-questions 300
  halluscan suite --name mine --datasets a.csv b.jsonl --model ./my-hf-folder""",
    ),
    "probe": (
        "Transfer: fit probes on one finished study and test them on another, at the cell the "
        "training study chose (its AUC first, then the gain over the test study's logits; the "
        "best test cell last, labelled optimistic). Shared questions are left out.",
        """examples:
  halluscan probe --train runs/demo --test runs/winobias
  halluscan probe --runs runs/demo runs/winobias runs/mnli   # the train x test matrix""",
    ),
    "detect": (
        "A detector that reads an answer's whole layer x position tensor (per-model adapters, "
        "one small shared transformer; ACT-ViT's idea). Cross-validated on each training "
        "study's nested folds against its best single cell and every control; with several "
        "studies, also trained on all at once; then fitted on all, saved, and scored on the "
        "held-out --test studies against the training study's fixed-cell probe.",
        """examples:
  halluscan detect --runs runs/demo
  halluscan detect --runs runs/grid/smollm2/world-facts runs/grid/gemma3-270m/world-facts \\
      --test runs/grid/smollm2/winobias --out runs/detector-wf
  halluscan score --question "..." --detector runs/detector""",
    ),
    "serve": (
        "A local web page over one finished study's model and banks: type a question and "
        "watch the answer's tokens and its layer x token map appear as they are written, score "
        "a typed answer, compare two side by side, and click through the study's heatmap to "
        "the answers a cell scores most and least likely wrong. Binds to 127.0.0.1.",
        """examples:
  halluscan serve                      # runs/demo, http://127.0.0.1:8765/
  halluscan serve --run runs/mine --port 9000""",
    ),
    "score": (
        "Score one answer token by token and layer by layer (given with --answer, or generated), "
        "or a file of them; writes score.json, the activity surface and the attention heatmap. "
        "A given answer is scored by the given-answer bank, a generated one by the own-answer "
        "bank (--bank overrides); the banks are the default study's unless --probes names one.",
        """examples:
  halluscan score --question "What is the capital of Australia?" --answer "Sydney."
  halluscan score --question "What is the capital of Peru?" --stream
  halluscan score --jsonl examples/true_false.jsonl""",
    ),
    "choose": (
        "Answer choice on held-out questions of a finished study: sample answers, let the "
        "probe pick one, and compare with greedy decoding and a majority vote (on the demo the "
        "probe's pick does not beat greedy).",
        """examples:
  halluscan choose --run runs/demo --samples 5 --questions 300""",
    ),
    "audit": (
        "Check a study's grades by hand: write a sample of graded answers to label (half of each "
        "grade), then read the labelled file back for the grader's error rate, which goes into "
        "metrics.json and the report.",
        """examples:
  halluscan audit runs/demo --n 50                       # writes runs/demo/audit.csv
  halluscan audit runs/demo --labels runs/demo/audit.csv""",
    ),
    "data": (
        "Download the published study's datasets (LLMsKnow) into the cache, or into --dir.",
        """examples:
  halluscan data fetch llmsknow
  halluscan data fetch llmsknow --dir ./data""",
    ),
    "positions": (
        "List the named token positions a study can read, and what each one is.",
        """examples:
  halluscan positions
  halluscan run --positions exact_answer_last last_q -1""",
    ),
}
