"""What each extra site costs, against the residual-only study, from a study run with ``--sites``.

A study with ``--sites residual,mlp,attn`` times its stages (``metrics.json``'s ``timings_s``).
The residual-only study is every stage but the two that the other sites add: ``extract_sites``
(one teacher-forced pass capturing every other site) and ``site_sweeps`` (a sweep and a nested
selection per site). Both are measured in the same run as the rest, so the ratio is not skewed
by another load on the machine at another time.

- ``extra_site_cost_vs_residual_study``: (extract_sites + site_sweeps) / n_other_sites, over the
  residual-only study's seconds.

Writes ``benchmarks/results/sites.json``.

    halluscan run --name demo --sites residual,mlp,attn
    python benchmarks/sites.py --run runs/demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ADDED = ("extract_sites", "site_sweeps")
NESTED_IN = ("given_answers_in_generation",)  # part of generate_extract already


def main() -> None:
    from halluscan.study import metrics as metrics_io
    from halluscan.study.config import DEMO
    from halluscan.study.runs import RunDir

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(RunDir.named(DEMO).root))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sites.json"))
    args = ap.parse_args()
    m = metrics_io.read(RunDir(Path(args.run)))
    if not m.sites or m.nested is None:
        raise SystemExit(f"{args.run}: no other sites; run it with --sites residual,mlp,attn")
    t = m.timings_s
    residual = sum(v for k, v in t.items() if k not in ADDED and k not in NESTED_IN)
    added = sum(t.get(k, 0.0) for k in ADDED)

    def cell(n: Any) -> list[Any]:
        return [n.auc, n.ci95, f"{n.cell.position} L{n.cell.layer}"] if n else []

    res = {
        "run": args.run,
        "sites": [m.heatmap.site if m.heatmap else "?"] + [s.site for s in m.sites],
        "residual_study_s": round(residual, 1),
        "extract_sites_s": t.get("extract_sites"),
        "site_sweeps_s": t.get("site_sweeps"),
        "extra_site_cost_vs_residual_study": round(added / len(m.sites) / residual, 4),
        "nested": {"residual": cell(m.nested), **{s.site: cell(s.nested) for s in m.sites}},
        "minus_residual": {s.site: [s.gain, s.gain_ci95, s.differs] for s in m.sites},
    }
    print(json.dumps(res, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
