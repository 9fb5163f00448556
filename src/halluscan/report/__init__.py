"""The report: the probe AUC heatmap, per-response figures, and the self-contained HTML page."""
