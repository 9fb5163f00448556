"""The study: its config and context, the run folder, the pipeline, the suite, and metrics.json."""
