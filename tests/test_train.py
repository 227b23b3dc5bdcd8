"""The one-stream trainer: exact resume, shared batches and init, NaN handling, dead latents, checkpoints."""

import pytest
import torch

from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.archs.relu import ReLUSAE
from nullsae.sae.train import TrainConfig, default_lr, lr_factor, train_saes
from nullsae.toy.korznikov import KorznikovData

D, M = 100, 256


def _stream(batch=256):
    return KorznikovData("constant", d=D, n_features=400, batch_size=batch, seed=1)


def _saes():
    return {
        "topk": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8, dead_tokens=512)),
        "topk/frozen-decoder": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8, baseline="frozen-decoder", dead_tokens=512)),
        "batchtopk": SAE(SAEConfig(arch="batchtopk", d_in=D, n_latents=M, k=8, dead_tokens=512)),
        "jumprelu": SAE(SAEConfig(arch="jumprelu", d_in=D, n_latents=M, k=8, target_l0=8)),
    }


def test_resumed_run_is_bit_identical(tmp_path):
    cfg = TrainConfig(steps=24, lr=3e-3, warmup_steps=5, checkpoint_every=5, log_every=4)
    straight = _saes()
    res_a = train_saes(straight, _stream(), cfg, checkpoint_dir=tmp_path / "a", progress=False)
    resumed = _saes()
    train_saes(resumed, _stream(), cfg, checkpoint_dir=tmp_path / "b", progress=False, stop_after=11)
    fresh = _saes()  # a new process would rebuild the SAEs from their configs
    res_b = train_saes(fresh, _stream(), cfg, checkpoint_dir=tmp_path / "b", progress=False)
    for name in straight:
        sa, sb = straight[name].state_dict(), fresh[name].state_dict()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs after resume"
        assert res_a[name].model_dump() == res_b[name].model_dump()


def test_identical_configs_train_identically_on_the_shared_stream():
    saes = {n: SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8)) for n in ("a", "b")}
    train_saes(saes, _stream(), TrainConfig(steps=6, lr=1e-3, warmup_steps=0), progress=False)
    assert torch.equal(saes["a"].W_dec, saes["b"].W_dec)


class _NaNStream:
    d_in = D

    def __init__(self, bad_steps):
        self.bad = set(bad_steps)
        self.inner = _stream()

    def batches(self, start_step=0):
        for step, x in enumerate(self.inner.batches(start_step), start=start_step):
            if step in self.bad:
                x = x.clone()
                x[3, 5] = float("nan")
            yield x


def test_nonfinite_batches_are_skipped_and_counted_or_refused():
    saes = {"topk": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8))}
    res = train_saes(saes, _NaNStream({2, 5}), TrainConfig(steps=8, lr=1e-3, warmup_steps=0), progress=False)
    assert res["topk"].skipped_batches == 2
    assert res["topk"].tokens == 6 * 256
    assert all(torch.isfinite(p).all() for p in saes["topk"].parameters())
    with pytest.raises(UserError, match="NaN or inf"):
        train_saes(
            {"t": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8))},
            _NaNStream({1}),
            TrainConfig(steps=3, skip_nonfinite=False),
            progress=False,
        )


def test_dead_latents_are_tracked():
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8, auxk=False))
    with torch.no_grad():
        sae.W_enc[:16] = -sae.W_enc[:16].abs() * 0  # zero encoder rows ...
        sae.b_enc[:16] = -1e6  # ... and a huge negative bias: these 16 latents can never fire
    sae.b_enc.register_hook(lambda g: g * 0)
    res = train_saes({"s": sae}, _stream(), TrainConfig(steps=5, lr=1e-4, warmup_steps=0), progress=False)
    assert res["s"].dead_fraction >= 16 / M


def test_corrupt_and_mismatched_checkpoints_are_user_errors(tmp_path):
    cfg = TrainConfig(steps=4, lr=1e-3, warmup_steps=0, checkpoint_every=2)
    train_saes(
        {"a": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8))}, _stream(), cfg, checkpoint_dir=tmp_path, progress=False, stop_after=2
    )
    with pytest.raises(UserError, match="holds SAEs"):
        train_saes({"b": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8))}, _stream(), cfg, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(UserError, match="different config"):
        train_saes({"a": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=4))}, _stream(), cfg, checkpoint_dir=tmp_path, progress=False)
    # a field TopK never reads (the relu L1 coefficient) does not block resuming
    res = train_saes(
        {"a": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8, l1_coef=0.1))}, _stream(), cfg, checkpoint_dir=tmp_path, progress=False
    )
    assert res["a"].steps == 4
    (tmp_path / "trainer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt"):
        train_saes({"a": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=8))}, _stream(), cfg, checkpoint_dir=tmp_path, progress=False)


def test_width_mismatch_and_lr_scaling():
    with pytest.raises(UserError, match="expects d_in"):
        train_saes({"a": SAE(SAEConfig(arch="topk", d_in=64, n_latents=M, k=8))}, _stream(), TrainConfig(steps=1), progress=False)
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(4 * 2**14) == pytest.approx(1e-4)


@pytest.mark.slow
def test_jumprelu_target_l0_penalty_pulls_l0_to_the_target():
    """λ·(L0/target − 1)² (SAEBench form) steers L0 from both sides of its start at k = 8: without it L0
    drifts up to ~19 here."""

    def final_l0(**kw) -> float:
        sae = SAE(SAEConfig(arch="jumprelu", d_in=D, n_latents=M, k=8, **kw))
        return train_saes({"j": sae}, _stream(512), TrainConfig(steps=300, lr=3e-3, warmup_steps=10), progress=False)["j"].l0

    assert final_l0(l0_coef=0.0) > 14
    assert abs(final_l0(target_l0=8) - 8) < 2
    assert final_l0(target_l0=4) < 7 and final_l0(target_l0=24) > 17


@pytest.mark.slow
def test_relu_controller_reaches_target_l0_without_winding_up():
    """L0 follows λ with a lag; a controller integrating through that lag wound λ up until every latent
    died here (L0 0.5). With anti-windup, L0 reaches the target and λ stays sane."""
    sae = SAE(SAEConfig(arch="relu", d_in=D, n_latents=M, target_l0=8, target_l0_rate=0.05))
    assert isinstance(sae, ReLUSAE)
    res = train_saes({"j": sae}, _stream(512), TrainConfig(steps=400, lr=1e-3, warmup_steps=10), progress=False)
    assert 4 <= res["j"].l0 <= 14
    assert float(sae.sparsity_coef) < 100, f"λ wound up to {float(sae.sparsity_coef):.3g}"


def test_lr_schedule_warms_up_drops_and_decays():
    """Linear warm-up, the step drop from lr_drop_step on, and the linear decay to 0 over the last fraction, multiplied."""
    cfg = TrainConfig(steps=100, lr=3e-3, warmup_steps=10, lr_drop_step=50, lr_drop_factor=1 / 3, decay_fraction=0.2)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[49] == 1.0
    assert f[50] == pytest.approx(1 / 3) and f[79] == pytest.approx(1 / 3)
    assert f[80] == pytest.approx(1 / 3) and f[90] == pytest.approx(1 / 6) and f[99] == pytest.approx(1 / 60)
    assert [lr_factor(s, TrainConfig(steps=100, warmup_steps=0)) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
