"""docs/spec.md#reconstruction reconstruction metrics against a direct numpy computation."""

import numpy as np
import pytest
import torch

from nullsae.metrics.ev_conventions import BATCH_DEPENDENT
from nullsae.metrics.reconstruction import ReconstructionAccumulator, reconstruction_metrics


def _case(seed=0, n=300, d=12, m=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 2 + 5  # a large mean: centring on zero would inflate EV
    xhat = x + rng.normal(size=(n, d)) * 1.5
    z = np.maximum(rng.normal(size=(n, m)), 0) * (rng.random((n, m)) < 0.2)
    z[:, :3] = 0  # three latents never fire
    return x, xhat, z


def test_metrics_match_numpy():
    x, xhat, z = _case()
    r = reconstruction_metrics(torch.tensor(x), torch.tensor(xhat), torch.tensor(z))
    xbar = x.mean(0)
    fvu = ((x - xhat) ** 2).sum() / ((x - xbar) ** 2).sum()
    ev_tok = np.mean(1 - ((x - xhat) ** 2).sum(1) / ((x - xbar) ** 2).sum(1))
    cos = np.mean((x * xhat).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(xhat, axis=1))
    assert r.fvu == pytest.approx(fvu, rel=1e-9)
    assert r.ev == pytest.approx(1 - fvu, rel=1e-9)
    assert r.ev_per_token == pytest.approx(ev_tok, rel=1e-9)
    assert r.cosine == pytest.approx(cos, rel=1e-9)
    assert r.l0 == pytest.approx(np.mean((z != 0).sum(1)))
    assert r.l1 == pytest.approx(np.mean(np.abs(z).sum(1)))
    assert r.l2_ratio == pytest.approx(np.mean(np.linalg.norm(xhat, axis=1) / np.linalg.norm(x, axis=1)))
    assert r.relative_reconstruction_bias == pytest.approx((xhat**2).sum() / (xhat * x).sum())
    assert r.dead_fraction_eval == pytest.approx(np.mean((z != 0).sum(0) == 0))
    zero_centred = 1 - ((x - xhat) ** 2).sum() / (x**2).sum()
    assert r.ev < zero_centred  # the mean-centred definition, not the inflated one


def test_streaming_equals_one_shot():
    x, xhat, z = _case(1)
    tx, txh, tz = map(torch.tensor, (x, xhat, z))
    acc = ReconstructionAccumulator(z.shape[1], mean=tx.mean(0), std=tx.std(0))
    for sl in (slice(0, 70), slice(70, 200), slice(200, 300)):
        acc.update(tx[sl], txh[sl], tz[sl])
    streamed, once = acc.result(), reconstruction_metrics(tx, txh, tz)
    for key, value in once.model_dump().items():
        if key not in BATCH_DEPENDENT:  # the peers' per-batch figures differ by design
            assert getattr(streamed, key) == pytest.approx(value, rel=1e-9), key


def test_without_known_mean_the_legacy_figure_is_absent_and_empty_input_fails():
    x, xhat, z = _case(2)
    acc = ReconstructionAccumulator(z.shape[1])
    acc.update(torch.tensor(x), torch.tensor(xhat), torch.tensor(z))
    assert acc.result().ev_per_token is None
    with pytest.raises(ValueError):
        ReconstructionAccumulator(4).result()


def test_data_without_variance_gives_nan_never_ev_one():
    """Constant data: Σ‖x − x̄‖² = 0, so FVU is 0/0 — undefined (NaN), not a perfect EV of 1."""
    x = torch.ones(64, 8)
    acc = ReconstructionAccumulator(16)
    acc.update(x, x.clone(), torch.zeros(64, 16))
    r = acc.result()
    assert np.isnan(r.fvu) and np.isnan(r.ev)


def test_standardised_ev_ignores_the_scale_of_each_dimension():
    """EV is dominated by a massive dimension; the standardised figure weighs every dimension equally, so
    rescaling one dimension leaves it unchanged, and it matches EV on the explicitly standardised data."""
    from nullsae.metrics.reconstruction import explained_variance, standardized_sq_terms

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64)
    recon = x.clone()
    recon[:, 1:] += 0.5 * torch.randn(500, 5, generator=g, dtype=torch.float64)  # dimension 0 exact, the rest noisy
    scaled_x, scaled_r = x.clone(), recon.clone()
    scaled_x[:, 0] *= 1000
    scaled_r[:, 0] *= 1000

    def ev_std(a: torch.Tensor, b: torch.Tensor) -> float:
        err, dev = standardized_sq_terms(a, b, a.mean(0), a.std(0))
        return explained_variance(err.numpy(), dev.numpy())

    def ev(a: torch.Tensor, b: torch.Tensor) -> float:
        return explained_variance((a - b).pow(2).sum(1).numpy(), (a - a.mean(0)).pow(2).sum(1).numpy())

    assert ev(scaled_x, scaled_r) > 0.99 > ev(x, recon)
    assert ev_std(scaled_x, scaled_r) == pytest.approx(ev_std(x, recon), rel=1e-9)
    mu, sd = x.mean(0), x.std(0)
    assert ev_std(x, recon) == pytest.approx(ev((x - mu) / sd, (recon - mu) / sd), rel=1e-9)
