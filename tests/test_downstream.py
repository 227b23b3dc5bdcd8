"""Downstream metrics of docs/spec.md#downstream: tiny real models, and the bundled SmolLM2 (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from nullsae.metrics.downstream import ce_loss_score, downstream_metrics, kl_score, mean_activation
from nullsae.models.hooks import capture_residuals

WINDOWS = torch.randint(3, 96, (3, 16), generator=torch.Generator().manual_seed(1))


def test_identity_and_zero_patches(tiny):
    ident = downstream_metrics(tiny.model, WINDOWS, 1, lambda x: x, batch_size=2).summary()
    assert ident.ce_sae == pytest.approx(ident.ce_clean, abs=1e-5)
    assert ident.ce_loss_score == pytest.approx(1.0, abs=1e-4)
    assert ident.kl_sae == pytest.approx(0.0, abs=1e-6) and ident.kl_score == pytest.approx(1.0, abs=1e-5)
    assert ident.n_tokens == 3 * 15
    zero = downstream_metrics(tiny.model, WINDOWS, 1, torch.zeros_like).summary()
    assert zero.ce_sae == pytest.approx(zero.ce_zero, abs=1e-5)
    assert zero.ce_loss_score == pytest.approx(0.0, abs=1e-4) and zero.kl_score == pytest.approx(0.0, abs=1e-5)
    assert zero.delta_ce == pytest.approx(zero.ce_zero - zero.ce_clean)


def test_mean_patch_uses_the_evaluation_mean(tiny):
    mean = mean_activation(tiny.model, WINDOWS, 2)
    x = capture_residuals(tiny.model, WINDOWS, [2])[2]
    torch.testing.assert_close(mean, x.reshape(-1, x.shape[-1]).mean(0))
    res = downstream_metrics(tiny.model, WINDOWS, 2, lambda v: mean.expand_as(v).clone(), mean=mean).summary()
    assert res.ce_sae == pytest.approx(res.ce_mean, abs=1e-5)


def test_skip_bos_keeps_the_first_position(tiny):
    # with only the first position clean, the zero patch still hurts, but less than patching everything
    full = downstream_metrics(tiny.model, WINDOWS, 0, torch.zeros_like).summary()
    kept = downstream_metrics(tiny.model, WINDOWS, 0, torch.zeros_like, skip_bos=True).summary()
    assert kept.skip_bos and kept.kl_zero != full.kl_zero
    assert kept.ce_clean == pytest.approx(full.ce_clean)


def test_ill_conditioned_warning():
    from conftest import tiny_model

    loaded = tiny_model("gpt_neox")
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.zero_()  # logits no longer depend on the residual
    res = downstream_metrics(loaded.model, WINDOWS, 1, lambda x: x).summary()
    assert res.ill_conditioned and res.warning is not None and "ill-conditioned" in res.warning
    assert math.isnan(res.ce_loss_score)


def test_control_variant_patches_see_the_clean_noise(tiny):
    from nullsae.models import make_variant

    control, _ = make_variant(tiny, "control", noise="fresh")
    res = downstream_metrics(control.model, WINDOWS, 1, lambda x: x).summary()
    assert res.kl_sae == pytest.approx(0.0, abs=1e-6) and res.ce_sae == pytest.approx(res.ce_clean, abs=1e-5)


def test_score_formulas():
    assert ce_loss_score(ce_clean=2.0, ce_sae=3.0, ce_zero=6.0) == pytest.approx(0.75)
    assert kl_score(kl_sae=1.0, kl_zero=4.0) == pytest.approx(0.75)


@pytest.mark.slow
def test_smollm2_capture_and_scores(smollm2):
    from nullsae.data import token_windows

    windows = token_windows(smollm2.tokenizer, smollm2.bos_id, window=32, n_windows=4, split="eval")
    assert (windows[:, 0] == smollm2.bos_id).all()
    with torch.no_grad():
        hs = smollm2.model(windows, output_hidden_states=True).hidden_states
    got = capture_residuals(smollm2.model, windows, [0, 5, 10])
    for layer in (0, 5, 10):
        torch.testing.assert_close(got[layer], hs[layer + 1])
    ident = downstream_metrics(smollm2.model, windows, 5, lambda x: x).summary()
    zero = downstream_metrics(smollm2.model, windows, 5, torch.zeros_like).summary()
    assert ident.ce_loss_score == pytest.approx(1.0, abs=1e-4)
    assert zero.ce_loss_score == pytest.approx(0.0, abs=1e-4)
    assert 1.0 < ident.ce_clean < 6.0 and zero.ce_zero > ident.ce_clean + 0.1 and zero.warning is None


def test_per_window_sums_do_not_depend_on_the_batching(tiny):
    """The bootstrap's units: each window's sums are the same computed alone or in a batch, and add up to the totals."""
    batched = downstream_metrics(tiny.model, WINDOWS, 1, lambda x: 0.5 * x, batch_size=len(WINDOWS))
    alone = [
        downstream_metrics(tiny.model, WINDOWS[i : i + 1], 1, lambda x: 0.5 * x, mean=mean_activation(tiny.model, WINDOWS, 1))
        for i in range(len(WINDOWS))
    ]
    for key, per_window in batched.sums.items():
        torch.testing.assert_close(per_window, torch.cat([a.sums[key] for a in alone]), rtol=1e-5, atol=1e-6)
    res = batched.summary()
    assert res.n_tokens == int(batched.sums["n_tokens"].sum()) == WINDOWS[:, 1:].numel()
    assert res.ce_sae == pytest.approx(float(batched.sums["ce_sae"].sum()) / res.n_tokens)


def test_scores_with_a_zero_denominator_are_nan():
    """Zero ablation that costs nothing leaves both scores undefined (NaN), not a ZeroDivisionError."""
    assert math.isnan(ce_loss_score(2.0, 2.5, 2.0))
    assert math.isnan(kl_score(0.3, 0.0))
