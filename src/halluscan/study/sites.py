"""Other sites than the residual stream (``--sites mlp attn``): extracted, swept and compared.

The study's own pass captures the residual stream while it generates. Each other site (the
MLP output, the published study's site; the attention output) is read afterwards by one
teacher-forced pass over the study's own answers (prompt + response, the same token ids) into
``runs/NAME/store_sites``, at the same named positions. Each site gets a sweep, a heatmap and a
nested best cell on the same answers and outer folds as the residual stream's headline, and the
paired difference of the two nested AUCs with a 95 % interval says whether the sites differ.
The residual stream stays the study's own site: its layer 0 is the tokens' identity, which the
controls need.
"""

from __future__ import annotations

import numpy as np

from halluscan.analyses.nested import Nested, nested
from halluscan.analyses.results import SiteResult
from halluscan.analyses.summary import heatmap, mean_ci
from halluscan.engine.extract import Item, extract_to_store
from halluscan.models.sites import RESIDUAL, first_layer
from halluscan.positions import EXACT
from halluscan.probes.features import Features
from halluscan.probes.sweep import GAIN_BOUNDS, sweep
from halluscan.progress import bar
from halluscan.provenance import Provenance, digest
from halluscan.records import Example
from halluscan.store import ActivationStore
from halluscan.store.layout import Layout, SiteLayout
from halluscan.study.context import StudyContext


def others(ctx: StudyContext) -> list[str]:
    """The sites probed beside the residual stream."""
    return [s for s in ctx.config.sites if s != RESIDUAL]


def extract_sites(
    ctx: StudyContext, examples: list[Example], prov: Provenance, own_key: str
) -> ActivationStore:
    """The other sites' activations of every stored answer (resumes; made once)."""
    cfg, lm = ctx.config, ctx.lm
    layers = {s: tuple(range(first_layer(s), lm.n_layers + 1)) for s in others(ctx)}
    layout = Layout(
        tuple(cfg.positions),
        cfg.store_dtype,
        {s: SiteLayout(ls, (lm.hidden_size,)) for s, ls in layers.items()},
    )
    key = digest({"own": own_key, "sites": sorted(layers)})
    store = ActivationStore.open_or_create(
        ctx.run.store_sites, key=key, layout=layout, provenance=prov.to_json()
    )
    items = [Item(e.qid, tuple(ctx.answered(e)), dict(e.positions)) for e in examples]
    n = len(items)
    with bar(n, "other sites", "q", cfg.quiet, initial=n - len(store.left_to_do(items, _qid))) as b:
        extract_to_store(lm.model, lm.tokenizer.pad_token_id, items, store, progress=b.update)
    return store


def _qid(item: Item) -> str:
    return item.qid


def site_features(
    store: ActivationStore, site: str, examples: list[Example], valid: np.ndarray
) -> Features:
    """``site``'s features in the order of ``examples`` (the sites store keeps its own order).

    ``valid`` is the study's own ``[example, position]`` mask (ambiguous grades left out).
    """
    row = {r["qid"]: i for i, r in enumerate(store.examples())}
    order = np.array([row[e.qid] for e in examples])
    return Features(
        tuple(store.layers(site)),
        tuple(store.positions),
        np.asarray(valid, dtype=bool),
        lambda p: store.position(p, site)[order],
    )


def compare_sites(
    ctx: StudyContext,
    store: ActivationStore,
    examples: list[Example],
    valid: np.ndarray,
    residual: Nested | None,
) -> list[SiteResult]:
    """Each other site's heatmap, nested best cell, and paired difference from the residual's."""
    y = np.array([0 if e.correct else 1 for e in examples], dtype=np.int64)
    groups = [e.qid for e in examples]
    cv, out = ctx.config.cv, []
    for site in others(ctx):
        features = site_features(store, site, examples, valid)
        swept = sweep(
            features, y, groups, folds=cv.folds, seed=cv.seed, c=cv.c, device=ctx.probe_device
        )
        exact = [p for p in EXACT if p in features.positions]
        run = nested(features, y, groups, exact, cv, ctx.probe_device)
        mine = run.result if run is not None else None
        gain, ci = None, None
        if (
            mine is not None
            and residual is not None
            and len(mine.per_fold) == len(residual.per_fold)
        ):
            gain, ci = mean_ci(np.array(mine.per_fold) - np.array(residual.per_fold), GAIN_BOUNDS)
        differs = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
        out.append(SiteResult(site, heatmap(swept, site), mine, gain, ci, differs))
    return out
