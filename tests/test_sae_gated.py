"""The gated SAE (docs/spec.md#architectures): its sparse path against the dense definition, SAELens's own
gated SAE on the same weights, exact resume, and `synth` and a grid run with it."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from nullsae.cli import main
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import load_sae, save_sae
from nullsae.sae.train import TrainConfig, train_saes

D, M = 32, 128


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(256, D, generator=g), dim=1)
    active = torch.rand(n, 256, generator=g) < 0.03
    return (active * torch.rand(n, 256, generator=g)) @ feats + 0.5


def _moved(sae, seed=0):
    """Every parameter away from its init (r_mag, b_mag and b_gate start at zero), decoder rows of mixed norms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(M, 1, generator=g) + 0.5)
        sae.r_mag.copy_(0.3 * torch.randn(M, generator=g))
        sae.b_mag.copy_(0.05 * torch.randn(M, generator=g))
        sae.b_enc.add_(0.05 * torch.randn(M, generator=g))
    return sae


def _dense_loss(sae, x, l1_coef):
    """The gated SAE written densely from the paper: gate, magnitude, L1 on ReLU(π)·‖W_dec‖, gate reconstruction through a frozen decoder."""
    xc = x - sae.b_dec
    pi = xc @ sae.W_enc.T + sae.b_enc
    magnitude = xc @ (sae.r_mag.exp()[:, None] * sae.W_enc).T + sae.b_mag
    z = (pi > 0).float() * torch.relu(magnitude)
    recon = z @ sae.W_dec + sae.b_dec
    total = (x - x.mean(0)).pow(2).sum()
    l1 = (torch.relu(pi) * sae.W_dec.norm(dim=1)).sum() / total
    via_gate = torch.relu(pi) @ sae.W_dec.detach() + sae.b_dec.detach()
    return recon, (x - recon).pow(2).sum() / total + l1_coef * l1 + (x - via_gate).pow(2).sum() / total


def test_gated_sparse_path_matches_dense_autograd():
    x = _data()
    sae = SAE(SAEConfig(arch="gated", d_in=D, n_latents=M, gate_l1_coef=0.4))
    sae.initialize(x)
    _moved(sae)
    out = sae(x)
    out.loss.backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}
    ref = SAE(sae.cfg)
    ref.load_state_dict(sae.state_dict())
    recon, loss = _dense_loss(ref, x, 0.4)
    loss.backward()
    assert 0 < float(out.terms["l0"]) < M
    assert torch.allclose(out.recon, recon, atol=1e-5)
    assert torch.allclose(out.loss, loss, atol=1e-5)
    assert set(fast) == {"W_enc", "b_enc", "W_dec", "b_dec", "r_mag", "b_mag"}
    for n, p in ref.named_parameters():
        assert p.grad is not None and torch.allclose(fast[n], p.grad, atol=1e-5, rtol=1e-4), n


def test_gated_encode_matches_saelens_gated_sae(tmp_path):
    """Saved in SAELens's format, the real library's GatedSAE encodes and decodes as nullsae does; what it writes, nullsae reads."""
    sae_lens = pytest.importorskip("sae_lens")
    x = _data()
    sae = SAE(SAEConfig(arch="gated", d_in=D, n_latents=M))
    sae.initialize(x)
    _moved(sae).eval()
    save_sae(sae, tmp_path / "s", fmt="saelens")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "s"))
    assert type(theirs).__name__ == "GatedSAE"
    with torch.no_grad():
        z = sae.encode(x)
        assert (z > 0).any()
        assert torch.allclose(theirs.encode(x), z, atol=1e-5)
        assert torch.allclose(theirs.decode(z), sae.decode(z), atol=1e-5)
    theirs.save_model(str(tmp_path / "t"))
    back = load_sae(tmp_path / "t")
    assert type(back) is type(sae)
    assert torch.allclose(back.encode(x), z, atol=1e-5)


def test_gated_resume_is_bit_identical(tmp_path):
    from nullsae.toy.korznikov import KorznikovData

    def saes():
        return {b: SAE(SAEConfig(arch="gated", d_in=100, n_latents=256, target_l0=8, baseline=b)) for b in ("none", "frozen-encoder")}

    def stream():
        return KorznikovData("constant", d=100, n_features=400, batch_size=256, seed=1)

    cfg = TrainConfig(steps=16, lr=3e-3, warmup_steps=4, checkpoint_every=5, log_every=4)
    straight = saes()
    res_a = train_saes(straight, stream(), cfg, checkpoint_dir=tmp_path / "a", progress=False)
    train_saes(saes(), stream(), cfg, checkpoint_dir=tmp_path / "b", progress=False, stop_after=7)
    fresh = saes()
    res_b = train_saes(fresh, stream(), cfg, checkpoint_dir=tmp_path / "b", progress=False)
    for name, sae in straight.items():
        for key, value in sae.state_dict().items():
            assert torch.equal(value, fresh[name].state_dict()[key]), f"{name}.{key} differs after resume"
        assert res_a[name].model_dump() == res_b[name].model_dump()


def test_synth_trains_a_gated_sae_and_its_baselines(capsys):
    args = [
        "--setting",
        "constant",
        "--arch",
        "gated",
        "--baselines",
        "--steps",
        "10",
        "--batch-size",
        "512",
        "--n-latents",
        "400",
        "--l0",
        "5",
        "--curve-points",
        "2",
    ]
    assert main(["synth", *args, "--eval-size", "1024", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("gated")]
    assert len(rows) == 4, out


@pytest.mark.slow
def test_a_grid_with_gated_saes_runs(tmp_path):
    from runner_helpers import tiny_model_dir, tiny_run_config

    from nullsae.pipeline import execute

    cfg = tiny_run_config(
        tiny_model_dir(tmp_path / "tiny-llama"), sae=dict(archs=["gated"], expansion=4, target_l0=4), metrics=["reconstruction"]
    )
    run = execute(cfg, tmp_path / "run", progress=False)
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert set(metrics.arch) == {"gated"}
    assert sum(o.trained for o in run.outcomes) == len(run.plan.cells) == 7  # 2 variants × 2 layers + 3 baselines
    assert metrics.ev.between(0, 1).all() and (metrics.l0 > 0).all(), metrics[["variant", "layer", "baseline", "ev", "l0"]]


def test_gated_random_null_matches_its_l0():
    """The free random null of a gated SAE: a fresh gated SAE whose gate bar is set to the SAE's mean L0 (docs/spec.md#free-nulls)."""
    from nullsae.sae.free_nulls import free_nulls, mean_l0

    x = _data(3072)
    sae = SAE(SAEConfig(arch="gated", d_in=D, n_latents=M, target_l0=6))
    sae.initialize(x[:512])
    sae.eval()
    nulls = free_nulls(sae, x[:1024], x[1024:2048])
    assert type(nulls["random"]) is type(sae)
    assert mean_l0(nulls["random"], x[:1024]) == pytest.approx(mean_l0(sae, x[:1024]), rel=0.05, abs=0.5)
