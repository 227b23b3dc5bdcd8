"""Example collection against a brute-force dense computation on random sparse activations."""

import pytest
import torch

from nullsae.autointerp.examples import (
    ActivationSource,
    ExampleConfig,
    SparseActs,
    _TopPerGroup,
    collect_examples,
    count_firing,
    sae_encoder,
    select_latents,
)
from nullsae.errors import UserError

N, T, M = 600, 8, 40


@pytest.fixture(scope="module")
def dense():
    """(N, T, M) activations: latent j fires on a fraction ~ (j+1)/M of tokens; latents 0..1 are dead."""
    gen = torch.Generator().manual_seed(0)
    rate = torch.linspace(0.0005, 0.08, M)
    fire = torch.rand(N, T, M, generator=gen) < rate
    vals = torch.rand(N, T, M, generator=gen) * 5
    acts = vals * fire
    acts[..., :2] = 0
    return acts


@pytest.fixture(scope="module")
def source(dense):
    tokens = torch.randint(0, 100, (N, T), generator=torch.Generator().manual_seed(1))
    return ActivationSource(tokens, lambda ids: SparseActs.from_dense(dense[ids], ids), M, batch_windows=37)


def test_counts_and_filter(dense, source):
    counts = count_firing(source)
    win = (dense > 0).any(1).sum(0)
    assert torch.equal(counts.windows, win)
    assert torch.equal(counts.tokens, (dense > 0).sum((0, 1)))
    cfg = ExampleConfig(min_examples=60, n_latents_sampled=5, seed=0)
    sel = select_latents(counts, cfg)
    assert sel.n_eligible == int((win >= 60).sum()) and sel.n_removed == M - sel.n_eligible
    assert sel.n_dead == 2
    assert len(sel.latents) == 5 and all(win[j] >= 60 for j in sel.latents)
    assert select_latents(counts, cfg).latents == sel.latents  # seeded


def test_top_windows_positives_and_negatives(dense, source):
    latents = [5, 17, 30, 39]
    cfg = ExampleConfig(top_k=25, n_explain=10, n_bins=5, per_bin=4, n_negative=30, reservoir=60, seed=3)
    out = collect_examples(source, latents, cfg)
    wmax = dense.amax(1)  # (N, M)
    for j in latents:
        ex = out[j]
        assert ex.n_active_windows == int((wmax[:, j] > 0).sum())
        top = set(wmax[:, j].topk(25).indices.tolist())
        assert len(ex.explain) == 10 and {e.window_id for e in ex.explain} <= top
        for e in ex.explain + ex.positives:
            assert torch.equal(e.acts, dense[e.window_id, :, j])  # per-token activations recovered exactly
            assert e.max_act > 0
        assert len(ex.positives) == 20 and not {e.window_id for e in ex.positives} & {e.window_id for e in ex.explain}
        # quantile bins are ordered: every window of a bin is at most the next bin's least window
        by_bin = [[e.max_act for e in ex.positives if e.quantile == b] for b in range(5)]
        assert all(len(b) == 4 for b in by_bin)
        assert all(max(by_bin[b]) <= min(by_bin[b + 1]) for b in range(4))
        assert len(ex.negatives) == 30 and len({e.window_id for e in ex.negatives}) == 30
        assert all(wmax[e.window_id, j] == 0 for e in ex.negatives)


def test_a_latents_examples_do_not_depend_on_which_others_are_collected(source):
    """A resumed auto-interp run collects only the unfinished latents; each must get the examples an
    uninterrupted run gives it."""
    cfg = ExampleConfig(top_k=25, n_explain=10, n_bins=5, per_bin=4, n_negative=30, reservoir=60, seed=3)
    together = collect_examples(source, [5, 17, 30, 39], cfg)
    alone = collect_examples(source, [30], cfg)
    for kind in ("explain", "positives", "negatives"):
        assert [e.window_id for e in getattr(alone[30], kind)] == [e.window_id for e in getattr(together[30], kind)]
    other_seed = collect_examples(source, [30], cfg.model_copy(update={"seed": 4}))
    assert [e.window_id for e in other_seed[30].positives] != [e.window_id for e in alone[30].positives]


def test_streaming_top_k_matches_sort_under_compaction():
    gen = torch.Generator().manual_seed(5)
    top = _TopPerGroup(k=7, n_groups=3)
    groups, keys = [], []
    for _ in range(300):  # ~30k candidates: many compactions at budget 4096
        g = torch.randint(0, 3, (100,), generator=gen)
        k = torch.rand(100, generator=gen)
        top.add(g, k, torch.arange(100), k)
        groups.append(g)
        keys.append(k)
    g_all, k_all = torch.cat(groups), torch.cat(keys)
    rg, rk, _, _ = top.result()
    for grp in range(3):
        assert torch.equal(rk[rg == grp], k_all[g_all == grp].sort(descending=True).values[:7])


def test_sae_encoder_matches_dense_encode():
    from nullsae.sae import SAE, SAEConfig

    sae = SAE(SAEConfig(arch="topk", d_in=16, n_latents=64, k=4)).eval()
    x = torch.randn(10, T, 16, generator=torch.Generator().manual_seed(2))
    enc = sae_encoder(sae, lambda ids: x[ids], block_bytes=4 * 64 * 5)  # chunks of 5 tokens
    ids = torch.tensor([3, 7, 1])
    sp = enc(ids)
    z = sae.encode(x[ids].reshape(-1, 16)).view(3, T, 64)
    back = torch.zeros(10, T, 64)
    back[sp.window, sp.pos, sp.latent] = sp.value
    assert torch.allclose(back[ids], z)


def test_bad_latents_and_windows():
    with pytest.raises(UserError):
        ActivationSource(torch.zeros(0, 4, dtype=torch.long), lambda i: SparseActs.from_dense(torch.zeros(len(i), 4, 3), i), 3)
    src = ActivationSource(torch.zeros(5, 4, dtype=torch.long), lambda i: SparseActs.from_dense(torch.zeros(len(i), 4, 3), i), 3)
    with pytest.raises(UserError):
        collect_examples(src, [3], ExampleConfig())


def test_auroc_summary_matches_sklearn_per_latent_and_pooled():
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from nullsae.autointerp.results import auroc, result_row, summarize
    from nullsae.autointerp.scorers import ScoreResult

    rng = np.random.default_rng(0)
    rows = []
    for lat in range(8):
        y = np.r_[np.ones(20, int), np.zeros(20, int)]
        s = np.round(rng.normal(y * (lat % 3), 1), 1)  # ties on purpose
        s[3] = np.nan  # a failed item
        assert auroc(s, y) == pytest.approx(roc_auc_score(y[~np.isnan(s)], s[~np.isnan(s)]))
        rows.append(
            result_row(
                ScoreResult(lat, "detection", s.tolist(), y.tolist(), [0] * 20 + [-1] * 20, {"no list": 1}),
                sae="a",
                explainer="e",
                prompt_version="v1",
            )
        )
    df = pd.DataFrame(rows)
    (s,) = summarize(df, n_boot=100)
    long = df.explode(["labels", "scores"], ignore_index=True)  # one row per (latent, test example)
    ok = long.dropna(subset=["scores"]).astype({"labels": int, "scores": float})
    assert len(long) == 8 * 40 and s.n_failed_items == 8 and s.failures == {"no list": 8}
    assert s.auroc_pooled.estimate == pytest.approx(roc_auc_score(ok["labels"], ok["scores"]))
    assert s.auroc_mean.estimate == pytest.approx(np.nanmean(df["auroc"]))
    assert s.auroc_pooled.low <= s.auroc_pooled.estimate <= s.auroc_pooled.high
    assert s.roc["fpr"][0] == 0 and s.roc["tpr"][-1] == 1
