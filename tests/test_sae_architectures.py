"""SAE architectures and random baselines (docs/spec.md#architectures, #baselines): each behaviour pinned against a direct computation."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.archs.batchtopk import BatchTopKSAE
from nullsae.sae.archs.jumprelu import JumpReLUSAE
from nullsae.sae.archs.matryoshka import MatryoshkaSAE
from nullsae.sae.config import ARCH_CONFIGS, ARCHS, BASELINES, config_class, parse_sae_config

D, M, K = 32, 128, 6


def _grad(p: torch.Tensor) -> torch.Tensor:
    """The gradient backward() left on `p` (it must have one)."""
    assert p.grad is not None
    return p.grad


def _data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(256, D, generator=g), dim=1)
    active = torch.rand(n, 256, generator=g) < 0.03
    return (active * torch.rand(n, 256, generator=g)) @ feats + 0.5


def _train(sae, x, steps=60, lr=5e-3):
    sae.initialize(x)
    opt = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        out = sae(x)
        opt.zero_grad()
        out.loss.backward()
        sae.before_step()
        opt.step()
        sae.after_step()
    return out


# The fast set trains every architecture unconstrained and every baseline on one architecture; the rest of
# the grid is slow (it runs in `make test`).
FAST_GRID = {
    *((arch, "none") for arch in ARCHS),
    ("topk", "frozen-decoder"),
    ("jumprelu", "soft-frozen-decoder"),
    ("gated", "frozen-encoder"),
}


@pytest.mark.parametrize(
    "arch, baseline",
    [pytest.param(a, b, marks=() if (a, b) in FAST_GRID else pytest.mark.slow, id=f"{b}-{a}") for b in BASELINES for a in ARCHS],
)
def test_every_arch_and_baseline_trains(arch, baseline):
    x = _data()
    sae = SAE(SAEConfig(arch=arch, d_in=D, n_latents=M, k=K, baseline=baseline, l1_coef=0.5, l0_coef=1e-3, target_l0=K))
    sae.initialize(x)
    enc0, dec0 = sae.W_enc.detach().clone(), sae.W_dec.detach().clone()
    fvu0 = float(sae(x).terms["fvu"])
    out = _train(sae, x)
    assert torch.isfinite(out.loss)
    # relu trades reconstruction for its L1 penalty, so only the others must improve on the init
    assert float(out.terms["fvu"]) < (1.0 if arch == "relu" else fvu0)
    sae.eval()
    z = sae.encode(x)
    assert z.shape == (x.shape[0], M) and (z >= 0).all()
    if baseline == "frozen-decoder":
        assert torch.equal(sae.W_dec, sae.W_dec_init)
        assert sae.decoder_drift() == pytest.approx(1.0)
    if baseline == "frozen-encoder":
        assert torch.equal(sae.W_enc, enc0)
    if baseline == "soft-frozen-decoder":
        cos = F.cosine_similarity(sae.W_dec, sae.W_dec_init, dim=1)
        assert (cos >= sae.cfg.tau - 1e-5).all()
    if sae.cfg.unit_norm_decoder or baseline == "soft-frozen-decoder":
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(M), atol=1e-5)
    if baseline != "frozen-decoder":
        assert not torch.equal(sae.W_dec, dec0)


def test_soft_frozen_projection_binds_at_high_tau():
    x = _data()
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, baseline="soft-frozen-decoder", tau=0.99))
    _train(sae, x, steps=100, lr=3e-2)
    cos = F.cosine_similarity(sae.W_dec, sae.W_dec_init, dim=1)
    assert (cos >= 0.99 - 1e-5).all()
    assert (cos < 0.999).any(), "the projection should hold rows on the cone boundary"


def test_trained_and_iso_baselines_share_initialisation():
    saes = [SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, baseline=b, seed=3)) for b in BASELINES]
    for s in saes[1:]:
        if s.cfg.init_kind == "iso":
            assert torch.equal(s.W_dec, saes[0].W_dec) and torch.equal(s.W_enc, saes[0].W_enc)


def test_cov_init_follows_activation_covariance():
    g = torch.Generator().manual_seed(0)
    scales = torch.full((D,), 0.3)
    scales[-1] = 5.0  # one dominant direction
    x = torch.randn(4096, D, generator=g) * scales
    iso = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, init="iso"))
    cov = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, init="cov"))
    cov.initialize(x)
    top_dir = torch.zeros(D)
    top_dir[-1] = 1
    assert float((cov.W_dec.detach() @ top_dir).pow(2).mean()) > 10 * float((iso.W_dec.detach() @ top_dir).pow(2).mean())
    assert torch.allclose(cov.W_dec.norm(dim=1), torch.ones(M), atol=1e-5)


def test_topk_sparse_path_matches_dense_autograd():
    x = _data(256)
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, auxk=False))
    sae.initialize(x)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(M, 1) + 0.5)  # non-unit rows exercise the decoder gradient fully
    out = sae(x)
    out.loss.backward()
    fast = {n: _grad(p).clone() for n, p in sae.named_parameters()}
    ref = SAE(sae.cfg)
    ref.load_state_dict(sae.state_dict())
    pre = (x - ref.b_dec) @ ref.W_enc.T + ref.b_enc
    vals, idx = pre.topk(K, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    recon = z @ ref.W_dec + ref.b_dec
    loss = (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    loss.backward()
    assert torch.allclose(out.recon, recon, atol=1e-5)
    assert torch.allclose(out.loss, loss, atol=1e-6)
    for n, p in ref.named_parameters():
        assert torch.allclose(fast[n], _grad(p), atol=1e-5, rtol=1e-4), n


def test_jumprelu_sparse_path_matches_dense_autograd():
    """The sparse code (entries above θ − ε/2) gives the dense JumpReLU loss and every gradient."""
    x = _data(256)
    sae = SAE(SAEConfig(arch="jumprelu", d_in=D, n_latents=M, k=K, l0_coef=0.3))
    assert isinstance(sae, JumpReLUSAE)
    sae.initialize(x)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(M, 1) + 0.5)
        sae.eps.mul_(20)  # a wide window puts many entries on both sides of θ inside it
    out = sae(x)
    out.loss.backward()
    fast = {n: _grad(p).clone() for n, p in sae.named_parameters()}
    ref = SAE(sae.cfg)
    assert isinstance(ref, JumpReLUSAE)
    ref.load_state_dict(sae.state_dict())
    theta, eps = ref.log_threshold.exp(), float(ref.eps)
    pre = torch.relu((x - ref.b_dec) @ ref.W_enc.T + ref.b_enc)
    z = pre * (pre > theta)
    window = ((pre - theta).abs() < eps / 2).float()
    # straight-through θ-gradients written as surrogate terms with the same derivative
    z = z + (-(theta / eps) * window * (theta - theta.detach()) * 1.0)
    step = (pre > theta).float() + (-(1 / eps) * window * (theta - theta.detach()))
    recon = z @ ref.W_dec + ref.b_dec
    loss = (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum() + 0.3 * step.sum(1).mean()
    loss.backward()
    assert int(window.sum()) > 100
    assert torch.allclose(out.recon, recon, atol=1e-5)
    assert torch.allclose(out.loss, loss, atol=1e-5)
    assert float(out.terms["l0"]) == pytest.approx(float((pre > theta).float().sum(1).mean()))
    for n, p in ref.named_parameters():
        assert torch.allclose(fast[n], _grad(p), atol=1e-5, rtol=1e-4), n


def test_batchtopk_keeps_k_per_token_on_average_and_thresholds_at_inference():
    x = _data(512)
    sae = SAE(SAEConfig(arch="batchtopk", d_in=D, n_latents=M, k=K))
    assert isinstance(sae, BatchTopKSAE)
    _train(sae, x, steps=50)
    out = sae.train()(x)
    assert float(out.terms["l0"]) == pytest.approx(K)
    assert float(sae.threshold) > 0
    sae.eval()
    z = sae.encode(x)
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc.T + sae.b_enc)
    assert torch.equal(z, pre * (pre > sae.threshold))


def test_jumprelu_threshold_gradient_is_the_straight_through_estimator():
    sae = SAE(SAEConfig(arch="jumprelu", d_in=D, n_latents=M, k=K, l0_coef=0.0))
    assert isinstance(sae, JumpReLUSAE)
    x = _data(256)
    sae.initialize(x)
    theta = sae.log_threshold.exp().detach()
    eps = float(sae.eps)
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc.T + sae.b_enc).detach()
    z = sae.encode(x)
    g_out = torch.randn_like(z)
    (z * g_out).sum().backward()
    window = ((pre - theta).abs() < eps / 2).float()
    expected_theta_grad = -(theta / eps) * (g_out * window).sum(0)
    assert torch.allclose(_grad(sae.log_threshold), expected_theta_grad * theta, atol=1e-4, rtol=1e-4)


def test_matryoshka_loss_averages_nested_prefixes():
    x = _data(256)
    sae = SAE(SAEConfig(arch="matryoshka", d_in=D, n_latents=M, k=K, auxk=False))
    assert isinstance(sae, MatryoshkaSAE)
    sae.initialize(x)
    out = sae(x)
    z = out.latents
    ends = sae.group_ends()
    assert ends == [64, 102, 128]
    fvus = [((x - (z[:, :e] @ sae.W_dec[:e] + sae.b_dec)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()) for e in ends]
    assert torch.allclose(out.loss, torch.stack(fvus).mean(), atol=1e-6)


def test_auxk_revives_dead_latents():
    x = _data(512)
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K))
    sae.initialize(x)
    dead = torch.zeros(M, dtype=torch.bool)
    dead[:40] = True
    out = sae(x, dead_mask=dead)
    assert "auxk" in out.terms
    out.loss.backward()
    assert _grad(sae.W_enc)[:40].abs().sum() > 0


def test_relu_loss_is_fvu_plus_weighted_l1():
    x = _data(128)
    sae = SAE(SAEConfig(arch="relu", d_in=D, n_latents=M, l1_coef=0.7))
    sae.initialize(x)
    out = sae(x)
    z = out.latents
    total = (x - x.mean(0)).pow(2).sum(1).mean()
    expected = (x - out.recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum() + 0.7 * (z * sae.W_dec.norm(dim=1)).sum(1).mean() / total
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_bad_configs_raise_user_errors():
    with pytest.raises(UserError, match="k = 128 must be smaller"):
        SAEConfig(arch="topk", d_in=D, n_latents=128, k=128)
    with pytest.raises(UserError, match="unknown SAE architecture 'foo'"):
        SAE(SAEConfig(arch="foo", d_in=D, n_latents=M))


@pytest.mark.parametrize("skewed", [False, True])
def test_batch_topk_selection_is_exact(skewed):
    from nullsae.sae.archs.batchtopk import batch_topk

    g = torch.Generator().manual_seed(0)
    pre = torch.randn(64, 200, generator=g)
    if skewed:  # one row holds far more than its share of winners: the candidate shortcut must fall back
        pre[7] += 10
    rows, cols = batch_topk(64 * 5)(pre)
    expected = pre.flatten().topk(64 * 5).indices
    assert set((rows * 200 + cols).tolist()) == set(expected.tolist())


@pytest.mark.parametrize("baseline", BASELINES)
def test_initial_reconstruction_has_the_data_scale_despite_an_outlier_dimension(baseline):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, D, generator=g)
    x[:, 3] = 50 * x[:, 3] + 100  # a "massive activation" dimension, as in real LMs
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, baseline=baseline))
    sae.initialize(x)
    assert float(sae(x).terms["fvu"]) < 1.0  # without the encoder gain, cov-initialised decoders overshoot ~k-fold


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_initial_reconstruction_has_the_data_scale_with_about_k_active(arch):
    """After the data-dependent init the code has ≈ k active latents and the reconstruction's least-squares
    gain is 1. JumpReLU once took its gain before placing θ, saw half the latents fire and shrank its
    pre-activations several-fold: its thresholds then lagged the encoder's Adam steps."""
    x = _data(2048)
    sae = SAE(SAEConfig(arch=arch, d_in=D, n_latents=M, k=K))
    sae.initialize(x)
    with torch.no_grad():
        z = sae.encode(x)
        recon = z @ sae.W_dec
        target = x - sae.b_dec
        gain = float((recon * target).sum() / recon.pow(2).sum())
    assert 0.5 * K <= float((z > 0).sum(1).float().mean()) <= 1.5 * K
    assert gain == pytest.approx(1.0, abs=0.15)


def test_config_module_and_sae_package_load_without_torch():
    """Reading SAE configs (and failing on a bad architecture name) must not pay for importing torch."""
    code = (
        "import sys, nullsae.sae\n"
        "from nullsae.errors import UserError\n"
        "from nullsae.sae.config import check_arch\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "try:\n    check_arch('foo')\nexcept UserError as e:\n    print(e)\n"
        "assert 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("unknown SAE architecture 'foo'")


@pytest.mark.parametrize("arch", ARCHS)
def test_registry_gives_one_class_and_one_config_per_architecture(arch):
    cls = config_class(arch)
    cfg = SAEConfig(arch=arch, d_in=D, n_latents=M, k=K, l1_coef=0.5, threshold_momentum=0.9)
    assert type(cfg) is cls and type(parse_sae_config(cfg.model_dump())) is cls
    sae = SAE(cfg)
    assert type(sae).config_class is cls and type(sae) is not SAE and isinstance(sae, SAE)
    others = {name for c in ARCH_CONFIGS if c is not cls for name in c.model_fields} - set(cls.model_fields)
    assert not others & set(cfg.model_dump()), "a config holds only its own architecture's fields"


# key_fields of the single-config layout: run directories keyed by them keep their keys
OLD_KEY_FIELDS = {
    "relu": {"l1_coef": 5.0, "target_l0": None, "target_l0_rate": 0.01},
    "topk": {"auxk": True, "auxk_coef": 0.03125, "k": 4},
    "batchtopk": {"auxk": True, "auxk_coef": 0.03125, "k": 4, "threshold_momentum": 0.99},
    "jumprelu": {"jumprelu_bandwidth": 0.001, "k": 4, "l0_coef": None, "target_l0": None},
    "matryoshka": {"auxk": True, "auxk_coef": 0.03125, "k": 4, "matryoshka_groups": [0.5, 0.3, 0.2], "threshold_momentum": 0.99},
}


@pytest.mark.parametrize("arch", list(OLD_KEY_FIELDS))
def test_key_fields_are_those_of_the_single_config_layout(arch):
    shared = {"baseline": "none", "d_in": 8, "dead_tokens": 10000000, "init": "iso", "n_latents": 64, "normalize_decoder": None, "seed": 0}
    assert SAEConfig(arch=arch, d_in=8, n_latents=64, k=4).key_fields() == {"arch": arch, **shared, **OLD_KEY_FIELDS[arch]}
