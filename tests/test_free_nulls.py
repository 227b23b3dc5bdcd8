"""Free nulls (docs/spec.md#free-nulls) on a planted SAE: the SAE beats all four on EV; identity reconstructs exactly;
in a run's grid (`baselines.kinds`) they get verdicts like the trained baselines."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from nullsae.sae import SAE, SAEConfig
from nullsae.sae.archs.batchtopk import BatchTopKSAE
from nullsae.sae.free_nulls import FREE_NULLS, compare_with_free_nulls, free_nulls, identity_null, mean_l0

D, M, K = 64, 128, 3


def planted(arch="topk", n=4096, seed=123):
    """Data that is exactly K-sparse in a known dictionary, and the SAE that encodes it (the planted truth)."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.nn.functional.normalize(torch.randn(M, D, generator=gen), dim=1)
    idx = torch.rand(n, M, generator=gen).argsort(1)[:, :K]
    z = torch.zeros(n, M).scatter_(1, idx, 1 + torch.rand(n, K, generator=gen))
    x = z @ W
    sae = SAE(SAEConfig(arch=arch, d_in=D, n_latents=M, k=K))
    with torch.no_grad():
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W)  # matched filter: near-orthogonal rows read each coefficient back
        sae.b_dec.zero_()
        sae.b_enc.zero_()
        if arch == "relu":
            sae.b_enc.fill_(-0.5)
        sae.initialized.fill_(True)
    return sae.eval(), x


def test_identity_gets_ev_1_at_full_width():
    x = torch.randn(500, D) * 3 + 1
    null = identity_null(x.mean(0), k=D)
    assert torch.allclose(null.decode(null.encode(x)), x, atol=1e-5)
    assert mean_l0(null, x) == pytest.approx(D)
    narrow = identity_null(x.mean(0), k=3)  # at a sparse L0 it keeps the 3 largest coordinates of x − x̄
    assert mean_l0(narrow, x) == pytest.approx(3)
    assert not torch.allclose(narrow.decode(narrow.encode(x)), x, atol=1e-2)


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_planted_sae_beats_every_free_null(arch):
    sae, x = planted(arch)
    fit, ev = x[:2048], x[2048:]
    rows = {r.null: r for r in compare_with_free_nulls(sae, ev, fit, n_boot=200)}
    assert set(rows) == set(FREE_NULLS)
    sae_ev = rows["random"].ev_sae
    assert sae_ev > 0.8
    for name in FREE_NULLS:  # every null at the SAE's L0
        assert rows[name].sae_beats_null, (name, rows[name])
        assert rows[name].ev_null < sae_ev - 0.1
        assert rows[name].l0_null == pytest.approx(rows[name].l0_sae, abs=0.6)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "batchtopk"])
def test_random_null_matches_the_sae_l0(arch):
    sae, x = planted("topk")
    other = SAE(SAEConfig(arch=arch, d_in=D, n_latents=M, k=K, seed=1))
    other.initialize(x[:512])
    with torch.no_grad():
        if arch == "batchtopk":
            assert isinstance(other, BatchTopKSAE)
            other.threshold.fill_(0.05)
    other.eval()
    nulls = free_nulls(other, x[:1024], x[1024:2048])
    target = mean_l0(other, x[:1024])
    assert mean_l0(nulls["random"], x[:1024]) == pytest.approx(target, rel=0.05, abs=0.5)
    assert mean_l0(nulls["pca"], x[:1024]) == pytest.approx(min(round(target), D), abs=1)
    # the shuffled decoder keeps the encoder, so the same latents fire
    assert torch.equal(nulls["shuffled-decoder"].encode(x[:64]) != 0, other.encode(x[:64]) != 0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from runner_helpers import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def test_free_nulls_in_the_grid_get_verdicts_and_a_place_in_the_report(tiny_dir, tmp_path):
    """`baselines.kinds` with the free nulls: built from the trained SAE (no training), scored and judged
    like the trained baselines, listed in report.html with every SAE's folder."""
    from runner_helpers import tiny_run_config

    from nullsae.experiment.store import list_saes
    from nullsae.pipeline import execute

    kinds = ["frozen-decoder", *FREE_NULLS]
    cfg = tiny_run_config(tiny_dir, variants=["trained"], layers=[2], baselines=dict(layers=[2], kinds=kinds), metrics=["reconstruction"])
    res = execute(cfg, tmp_path / "run", progress=False)
    ev = {v.null: v for v in res.verdicts if v.metric == "ev"}
    assert set(ev) == set(kinds)
    assert {ev[n].null_kind for n in FREE_NULLS} == {"free-null"} and ev["frozen-decoder"].null_kind == "sae-baseline"
    m = pd.read_parquet(tmp_path / "run" / "metrics.parquet").set_index("baseline")
    assert (m.loc[list(FREE_NULLS), "train_steps"] == 0).all() and m["train_steps"]["none"] > 0
    n_latents = m["n_latents"]
    assert n_latents["pca"] == 2 * 32 and n_latents["random"] == n_latents["none"] == 128
    for name in ("random", "pca", "identity"):  # the L0 of the trained SAE (TopK k = 4)
        assert m.loc[name, "l0"] == pytest.approx(m.loc["none", "l0"], abs=0.6), name
    html = res.report_path.read_text(encoding="utf-8")
    assert "free null" in html and all(f">{n}<" in html for n in FREE_NULLS)
    rows = list_saes(tmp_path / "run")
    assert len(rows) == 1 + len(kinds)
    for r in rows:  # the SAE table: each folder relative to the run folder, with what determines it
        assert Path(r["path"]).relative_to(tmp_path / "run").as_posix() in html
    assert 'id="saes"' in html
