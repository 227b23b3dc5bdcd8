"""SAEBench core-schema JSON: SAEBench's own output model accepts it and its numbers match SAEBench's
core evaluation on the same activations (where sae-bench imports); the field layout is pinned always."""

import json

import pytest
import torch

from nullsae.report.saebench import DownstreamNumbers, core_eval_output
from nullsae.sae import SAE, SAEConfig

D, M, K = 16, 64, 4
CATEGORIES = {
    "model_behavior_preservation": {"kl_div_score", "kl_div_with_ablation", "kl_div_with_sae"},
    "model_performance_preservation": {"ce_loss_score", "ce_loss_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae"},
    "reconstruction_quality": {"explained_variance", "explained_variance_legacy", "mse", "cossim"},
    "shrinkage": {"l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias"},
    "sparsity": {"l0", "l1"},
    "token_stats": {"total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"},
    "misc_metrics": {
        "freq_over_1_percent",
        "freq_over_10_percent",
        "normalized_freq_over_1_percent",
        "normalized_freq_over_10_percent",
        "average_max_encoder_cosine_sim",
        "average_max_decoder_cosine_sim",
        "frac_alive",
    },
}


def _case():
    torch.manual_seed(0)
    x = torch.randn(1024, D) * torch.linspace(0.5, 2, D) + 3
    sae = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K))
    sae.initialize(x)
    return sae.eval(), x


def _output(sae, x, downstream=None):
    return core_eval_output(
        sae, x, model_name="tiny", dataset="bundled", context_size=32, hook_name="blocks.1.hook_resid_post", downstream=downstream
    )


def test_layout_is_saebench_core():
    sae, x = _case()
    out = json.loads(json.dumps(_output(sae, x, DownstreamNumbers(ce_loss_score=0.9, kl_div_score=0.8))))
    assert out["eval_type_id"] == "core"
    assert {k: set(v) for k, v in out["eval_result_metrics"].items()} == CATEGORIES
    assert out["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"] == 0.9
    assert out["eval_result_metrics"]["model_behavior_preservation"]["kl_div_with_sae"] == -1.0  # SAEBench's "not computed"
    assert out["eval_result_metrics"]["sparsity"]["l0"] == pytest.approx(K)


def test_saebench_reads_it_and_computes_the_same_numbers(tmp_path):
    core = pytest.importorskip("sae_bench.evals.core.main")
    eval_output = pytest.importorskip("sae_bench.evals.core.eval_output")
    from sae_lens import SAE as SaeLensSAE
    from test_ev_conventions import _Replay

    from nullsae.sae.io import save_sae

    sae, x = _case()
    out = _output(sae, x)
    parsed = eval_output.CoreEvalOutput(**out)  # SAEBench's own typed output model
    assert parsed.eval_result_metrics.sparsity.l0 == pytest.approx(K)
    save_sae(sae, tmp_path / "s", fmt="saelens", hook="blocks.1.hook_resid_post")
    theirs_sae = SaeLensSAE.load_from_disk(str(tmp_path / "s"))
    theirs_sae.cfg.hook_name, theirs_sae.cfg.hook_layer, theirs_sae.cfg.hook_head_index = "blocks.1.hook_resid_post", 1, None
    batches = list(x.split(1024))
    replay = _Replay(batches)
    theirs, _ = core.get_sparsity_and_variance_metrics(
        theirs_sae,
        replay,
        replay,
        n_batches=len(batches),
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=False,
        eval_batch_size_prompts=1,
        model_kwargs={},
    )
    ours = out["eval_result_metrics"]
    for cat, key in [
        ("reconstruction_quality", "explained_variance"),
        ("reconstruction_quality", "explained_variance_legacy"),
        ("reconstruction_quality", "cossim"),
        ("shrinkage", "l2_ratio"),
        ("shrinkage", "l2_norm_in"),
        ("shrinkage", "relative_reconstruction_bias"),
        ("sparsity", "l0"),
        ("sparsity", "l1"),
    ]:
        assert ours[cat][key] == pytest.approx(theirs[key], rel=1e-4), key
