"""Peer cross-check: SAELens's own `evals.run_evals` (CE score, KL score, L0, EV) on an SAE nullsae
trained on a tiny real GPT-2, run through TransformerLens with the same weights, agrees with nullsae's
numbers on the same tokens.

SAEBench's core evaluation is the same code path in SAEBench 0.6.0 but sae-bench cannot be installed
beside this project's pins (it requires numpy < 2), so SAELens's module is the peer here; where
sae-bench imports, tests/test_ev_conventions.py and tests/test_audit_saebench.py run its functions.
"""

from typing import Any, cast

import pytest
import torch
from conftest import tiny_model

from nullsae.metrics.downstream import downstream_metrics, mean_activation
from nullsae.metrics.ev_conventions import library_ev
from nullsae.metrics.reconstruction import reconstruction_metrics
from nullsae.models.hooks import capture_residuals
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import save_sae
from nullsae.sae.train import TrainConfig, train_saes

LAYER, CTX, BATCH, N_EVAL = 1, 32, 8, 32  # windows per SAELens batch, evaluation windows
D, M, K, VOCAB = 32, 128, 8, 96


class _Stream:
    """Shuffled activation batches for nullsae's trainer."""

    def __init__(self, x, batch=256):
        self.x, self.batch, self.d_in = x, batch, x.shape[1]

    def batches(self, start_step=0):
        step = start_step
        while True:
            perm = torch.randperm(self.x.shape[0], generator=torch.Generator().manual_seed(step // 100))
            i = (step % 100) * self.batch % self.x.shape[0]
            yield self.x[perm][i : i + self.batch]
            step += 1


class _TokenSource:
    """Feeds SAELens's eval loop our evaluation windows in order (it draws `n` windows per batch)."""

    def __init__(self, windows):
        self.windows, self.i, self.context_size, self.store_batch_size_prompts = windows, 0, windows.shape[1], BATCH

    def get_batch_tokens(self, n):
        out = self.windows[self.i : self.i + n]
        self.i += n
        return out

    def reset_input_dataset(self):
        self.i = 0


def _transformer_lens_copy(hf):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    cfg = HookedTransformerConfig(
        n_layers=3,
        d_model=D,
        n_ctx=64,
        d_head=8,
        n_heads=4,
        d_mlp=4 * D,
        d_vocab=VOCAB,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
    )
    tl = HookedTransformer(cfg)
    tl.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    return tl.eval()


@pytest.mark.slow
def test_saelens_evals_agree_with_nullsae(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    pytest.importorskip("transformer_lens")
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    hf = tiny_model("gpt2").model.eval()
    tl = _transformer_lens_copy(hf)
    gen = torch.Generator().manual_seed(0)
    train_windows = torch.randint(VOCAB, (256, CTX), generator=gen)
    eval_windows = torch.randint(VOCAB, (N_EVAL, CTX), generator=gen)
    with torch.no_grad():
        assert torch.allclose(tl(eval_windows[:4]), hf(eval_windows[:4]).logits, atol=1e-4)  # the same model

    x_train = capture_residuals(hf, train_windows, [LAYER])[LAYER].reshape(-1, D)
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K))
    train_saes({"sae": sae}, _Stream(x_train), TrainConfig(steps=300, warmup_steps=10, lr=3e-3), progress=False)
    sae.eval()

    # nullsae's numbers
    x_eval = capture_residuals(hf, eval_windows, [LAYER])[LAYER]
    with torch.no_grad():
        flat = x_eval.reshape(-1, D)
        z = sae.encode(flat)
        ours = reconstruction_metrics(flat, sae.decode(z), z)
        per_batch = [(xb.reshape(-1, D), sae.decode(sae.encode(xb.reshape(-1, D)))) for xb in x_eval.split(BATCH)]
        lib = library_ev(per_batch)
        down = downstream_metrics(
            hf, eval_windows, LAYER, lambda x: sae.decode(sae.encode(x)), mean=mean_activation(hf, eval_windows, LAYER), batch_size=BATCH
        ).summary()

    # SAELens's numbers, its own evaluation code on the TransformerLens copy
    save_sae(sae, tmp_path / "s", fmt="saelens", hook=f"blocks.{LAYER}.hook_resid_post")
    theirs_sae = sae_lens.SAE.load_from_disk(str(tmp_path / "s"))
    n_batches = N_EVAL // BATCH
    config = EvalConfig(
        batch_size_prompts=BATCH,
        n_eval_reconstruction_batches=n_batches,
        n_eval_sparsity_variance_batches=n_batches,
        compute_kl=True,
        compute_ce_loss=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
    )
    source = cast(Any, _TokenSource(eval_windows))  # a duck-typed stand-in for SAELens's ActivationsStore
    theirs, _ = run_evals(theirs_sae, source, tl, ActivationScaler(), config, exclude_special_tokens=False)

    # Tolerances: float32 forward passes through two implementations of the same network (~1e-5 relative).
    assert ours.ev > 0.5  # a real SAE, not a degenerate one
    assert ours.l0 == pytest.approx(theirs["sparsity"]["l0"], abs=1e-3)
    assert ours.ev == pytest.approx(theirs["reconstruction_quality"]["explained_variance"], abs=1e-3)
    assert lib.saelens_explained_variance_legacy == pytest.approx(theirs["reconstruction_quality"]["explained_variance_legacy"], abs=1e-3)
    assert down.ce_loss_score == pytest.approx(theirs["model_performance_preservation"]["ce_loss_score"], abs=1e-3)
    assert down.ce_clean == pytest.approx(theirs["model_performance_preservation"]["ce_loss_without_sae"], rel=1e-4)
    assert down.ce_sae == pytest.approx(theirs["model_performance_preservation"]["ce_loss_with_sae"], rel=1e-4)
    assert down.kl_score == pytest.approx(theirs["model_behavior_preservation"]["kl_div_score"], abs=1e-3)
