"""Every library's EV figure (nullsae.metrics.ev_conventions) against that library's own code on the
same tensors, and a worked example pinned by hand (docs/guide/ev-definitions.md)."""

import json
from importlib import import_module
from typing import Any, cast

import pytest
import torch

from nullsae.metrics.ev_conventions import LibraryEVAccumulator, library_ev
from nullsae.metrics.reconstruction import reconstruction_metrics

D, M, K, B, NB = 16, 64, 4, 96, 3  # width, latents, k, tokens per batch, batches
HOOK = "blocks.1.hook_resid_post"


def _batches(seed=0):
    """NB batches of activations with a large shared mean (as residual streams have) and an SAE's reconstructions."""
    gen = torch.Generator().manual_seed(seed)
    offset = 4 * torch.randn(D, generator=gen)
    xs = [offset + torch.randn(B, D, generator=gen) * torch.linspace(0.5, 2, D) for _ in range(NB)]
    return xs


def _saelens_sae(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    from test_io import _randomised

    theirs = _randomised(sae_lens.SAE.from_dict({"architecture": "topk", "d_in": D, "d_sae": M, "k": K, "metadata": {"hook_name": HOOK}}))
    with torch.no_grad():
        theirs.b_dec.copy_(4 * torch.randn(D, generator=torch.Generator().manual_seed(0)))
    return theirs


class _Replay:
    """Stands in for the transformer and the token store of the peers' eval loops: each batch of
    tokens is a placeholder, and the model's cache at the hook is the next batch of activations (the
    library's own code computes every metric)."""

    def __init__(self, xs):
        self.xs = list(xs)

    def get_batch_tokens(self, n):
        return torch.zeros(1, self.xs[0].shape[0], dtype=torch.long)

    def run_with_cache(self, tokens, names_filter, **_):
        return None, {names_filter[0]: self.xs.pop(0)[None]}


def test_saelens_figures_match_saelens(tmp_path):
    from sae_lens.evals import ExplainedVarianceCalculator, get_sparsity_and_variance_metrics
    from sae_lens.training.activation_scaler import ActivationScaler

    sae = _saelens_sae(tmp_path)
    xs = _batches()
    with torch.no_grad():
        recons = [sae.decode(sae.encode(x)) for x in xs]
    ours = library_ev(list(zip(xs, recons)))
    calc = ExplainedVarianceCalculator()
    for x, r in zip(xs, recons):
        calc.add_batch(sae_output=r, hidden_acts=x)
    assert ours.saelens_explained_variance == pytest.approx(calc.compute(), rel=1e-5)  # SAELens squares in float32
    replay = cast(Any, _Replay(xs))  # a duck-typed stand-in for the library's model and token store
    theirs, _ = get_sparsity_and_variance_metrics(
        sae,
        replay,
        replay,
        ActivationScaler(),
        n_batches=NB,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=False,
        eval_batch_size_prompts=1,
        model_kwargs={},
    )
    assert ours.saelens_explained_variance == pytest.approx(theirs["explained_variance"], abs=1e-6)
    assert ours.saelens_explained_variance_legacy == pytest.approx(theirs["explained_variance_legacy"], abs=1e-5)
    # nullsae's EV is SAELens's current definition; its other figures agree too
    x_all, r_all = torch.cat(xs), torch.cat(recons)
    with torch.no_grad():
        nullsae = reconstruction_metrics(x_all, r_all, sae.encode(x_all))
    assert nullsae.ev == pytest.approx(theirs["explained_variance"], abs=1e-6)
    assert nullsae.l0 == pytest.approx(theirs["l0"], abs=1e-6)
    assert nullsae.cosine == pytest.approx(theirs["cossim"], abs=1e-5)
    assert nullsae.l2_ratio == pytest.approx(theirs["l2_ratio"], abs=1e-5)


def test_saebench_figures_match_saebench(tmp_path):
    core = pytest.importorskip("sae_bench.evals.core.main")
    sae = _saelens_sae(tmp_path)
    sae.cfg.hook_name, sae.cfg.hook_layer, sae.cfg.hook_head_index = HOOK, 1, None  # sae-bench 0.6.0 reads SAELens 5 field names
    xs = _batches(1)
    with torch.no_grad():
        recons = [sae.decode(sae.encode(x)) for x in xs]
    ours = library_ev(list(zip(xs, recons)))
    replay = _Replay(xs)
    theirs, _ = core.get_sparsity_and_variance_metrics(
        sae,
        replay,
        replay,
        n_batches=NB,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=False,
        eval_batch_size_prompts=1,
        model_kwargs={},
    )
    assert ours.saebench_explained_variance == pytest.approx(theirs["explained_variance"], rel=1e-5)
    assert ours.saebench_explained_variance_legacy == pytest.approx(theirs["explained_variance_legacy"], abs=1e-5)


def test_sparsify_fvu_matches_sparsify():
    sparsify = pytest.importorskip("sparsify")
    from test_io import _randomised

    coder = _randomised(sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=M, k=K)))
    xs = _batches(2)
    with torch.no_grad():
        outs = [coder(x) for x in xs]
    ours = library_ev([(x, o.sae_out) for x, o in zip(xs, outs)])
    assert ours.sparsify_fvu == pytest.approx(sum(float(o.fvu) for o in outs) / NB, rel=1e-5)


def test_dictionary_learning_matches_dictionary_learning():
    pytest.importorskip("dictionary_learning")
    evaluation, top_k = import_module("dictionary_learning.evaluation"), import_module("dictionary_learning.trainers.top_k")
    from test_io import _randomised

    ae = _randomised(top_k.AutoEncoderTopK(D, M, K))
    xs = _batches(3)
    with torch.no_grad():
        recons = [ae(x) for x in xs]
    ours = library_ev(list(zip(xs, recons)))
    theirs = evaluation.evaluate(ae, iter(xs), n_batches=NB)
    assert ours.dictionary_learning_frac_variance_explained == pytest.approx(theirs["frac_variance_explained"], rel=1e-5)


def test_worked_example_by_hand():
    """docs/guide/ev-definitions.md: two batches of two 2-d tokens, numbers worked out by hand."""
    x1, r1 = torch.tensor([[3.0, 0.0], [1.0, 0.0]]), torch.tensor([[3.0, 0.0], [2.0, 0.0]])
    x2, r2 = torch.tensor([[2.0, 1.0], [2.0, -1.0]]), torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    ev = library_ev([(x1, r1), (x2, r2)])
    # all tokens: x̄ = (2, 0); Σ‖x − x̄‖² = 1 + 1 + 1 + 1 = 4; Σ‖x − x̂‖² = 0 + 1 + 1 + 1 = 3
    assert ev.saelens_explained_variance == pytest.approx(1 - 3 / 4)
    # per batch means (2, 0) and (2, 0): per-token 1 − err/dev = 1, 0, 0, 0
    assert ev.saelens_explained_variance_legacy == pytest.approx(0.25)
    assert ev.saebench_explained_variance_legacy == pytest.approx(0.25)
    # SAEBench: E‖x‖² = (9 + 1 + 5 + 5)/4 = 5; E_b[x_d²] is (5, 0) and (4, 1), their mean (5 + 0 + 4 + 1)/4 = 2.5;
    # total = 5 − 2.5² = −1.25, residual = 3/4 → 1 − 0.75 / −1.25 = 1.6
    assert ev.saebench_explained_variance == pytest.approx(1.6)
    # sparsify: batch FVUs 1/2 and 2/2 → mean 0.75
    assert ev.sparsify_fvu == pytest.approx(0.75)
    # dictionary_learning: batch 1 error (0, −1): Var = 0.5 / Var(x) = 2 → 0.75;
    # batch 2 error (0, ±1): Var = 2 / Var(x) = 2 → 0; mean 0.375
    assert ev.dictionary_learning_frac_variance_explained == pytest.approx(0.375)


def test_streaming_equals_one_shot():
    xs = _batches(4)
    rs = [x + 0.3 * torch.randn_like(x) for x in xs]
    acc = LibraryEVAccumulator()
    for x, r in zip(xs, rs):
        acc.update(x, r)
    assert json.dumps(acc.result().model_dump()) == json.dumps(library_ev(list(zip(xs, rs))).model_dump())
