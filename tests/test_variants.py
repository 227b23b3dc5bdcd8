"""Null models of docs/spec.md#variants on tiny real GPT-NeoX, Llama and GPT-2 models."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import pytest
import torch

from nullsae.errors import UserError
from nullsae.models import make_variant
from nullsae.models.hooks import capture_residuals
from nullsae.models.variants import parameter_roles

IDS = torch.tensor([[1, 5, 9, 5, 17, 33, 5, 2], [1, 40, 41, 42, 5, 5, 7, 8]])


def _params(loaded):
    return dict(loaded.model.named_parameters())


def test_rerandomized_matches_per_tensor_mean_and_std(tiny):
    var, manifest = make_variant(tiny, "rerandomized", seed=42)
    before, after = _params(tiny), _params(var)
    assert before.keys() == after.keys()
    for name, p in before.items():
        q = after[name]
        n = p.numel()
        std = p.double().std().item() if n > 1 else 0.0
        tol = 3 * std / math.sqrt(n) + 1e-6
        assert abs(q.double().mean().item() - p.double().mean().item()) <= tol, name
        if n > 1:
            assert abs(q.double().std().item() - std) <= tol, name
        if std > 0:
            assert not torch.equal(p, q), name
    assert all(r.resampled for r in manifest.tensors if r.std_before > 0)
    assert tiny.model.get_input_embeddings().weight is not var.model.get_input_embeddings().weight
    # the source model is untouched and the seed makes the result reproducible
    again, _ = make_variant(tiny, "rerandomized", seed=42)
    assert all(torch.equal(after[k], v) for k, v in _params(again).items())
    other, _ = make_variant(tiny, "rerandomized", seed=7)
    assert not all(torch.equal(after[k], v) for k, v in _params(other).items())


def test_excl_emb_keeps_embeddings_and_ties(tiny):
    var, manifest = make_variant(tiny, "rerandomized-excl-emb", seed=42)
    m, v = tiny.model, var.model
    assert torch.equal(m.get_input_embeddings().weight, v.get_input_embeddings().weight)
    assert torch.equal(m.get_output_embeddings().weight, v.get_output_embeddings().weight)
    tied = m.get_input_embeddings().weight is m.get_output_embeddings().weight
    assert (v.get_input_embeddings().weight is v.get_output_embeddings().weight) == tied
    roles = parameter_roles(v)
    kept = {r.name for r in manifest.tensors if not r.resampled}
    assert kept == {n for n, r in roles.items() if "embedding" in r}
    # everything else, norms included by default, was resampled
    assert any(r.role == "norm" and r.resampled for r in manifest.tensors)


def test_keep_norms(tiny):
    var, manifest = make_variant(tiny, "rerandomized", keep_norms=True)
    before = _params(tiny)
    for r in manifest.tensors:
        if r.role == "norm":
            assert not r.resampled and torch.equal(before[r.name], _params(var)[r.name])
    assert manifest.slug == "rerandomized-s42-keepnorms"


def test_control_noise_modes(tiny):
    fresh, mf = make_variant(tiny, "control", noise="fresh")
    a = capture_residuals(fresh.model, IDS, [1])[1]
    b = capture_residuals(fresh.model, IDS, [1])[1]
    assert not torch.allclose(a, b)
    per, mp = make_variant(tiny, "control", noise="per-token", sigma=2.0)
    c = capture_residuals(per.model, IDS, [1])[1]
    d = capture_residuals(per.model, IDS, [1])[1]
    assert torch.equal(c, d)
    # per-token noise depends only on the token id: position-free input vectors repeat with the id
    emb = per.model.get_input_embeddings()(IDS)
    assert torch.equal(emb[0, 1], emb[1, 4]) and not torch.equal(emb[0, 1], emb[0, 2])
    assert abs(emb.std().item() - 2.0) < 0.3
    trained = capture_residuals(tiny.model, IDS, [1])[1]
    assert not torch.allclose(trained, c)
    assert all(not r.resampled for r in mp.tensors) and mp.sigma == 2.0 and mp.noise == "per-token"
    assert mf.slug == "control-s42-fresh-sigma1" and mp.slug == "control-s42-per-token-sigma2"


def test_step0_differs_and_says_how(tiny):
    var, manifest = make_variant(tiny, "step0", seed=3)
    before, after = _params(tiny), _params(var)
    assert before.keys() == after.keys()
    assert not any(torch.equal(before[k], after[k]) for k in before if before[k].std() > 0)
    assert manifest.step0_source is not None and manifest.step0_source.startswith("from_config(seed=3)")
    # the architecture's own initialiser: weight matrices drawn with (at most) the config's initializer_range
    init = var.model.config.initializer_range  # GPT-2 scales its residual projections down by sqrt(2·n_layer)
    stds = [r.std_after for r in manifest.tensors if r.role == "other" and len(r.shape) == 2]
    assert all(0.2 * init < s < 1.2 * init for s in stds) and max(stds) > 0.8 * init
    again, _ = make_variant(tiny, "step0", seed=3)
    assert all(torch.equal(after[k], v) for k, v in _params(again).items())


def test_trained_is_the_model_and_manifest_written(tiny, tmp_path):
    var, manifest = make_variant(tiny, "trained")
    assert var.model is tiny.model and manifest.slug == "trained"
    _, manifest = make_variant(tiny, "rerandomized-excl-emb", seed=5)
    path = manifest.write(tmp_path / "sub" / "manifest.json")
    data = json.loads(path.read_text())
    assert data["variant"] == "rerandomized-excl-emb" and data["seed"] == 5 and data["model"] == tiny.name
    names = {t["name"] for t in data["tensors"]}
    assert names == set(_params(tiny))
    rec = next(t for t in data["tensors"] if t["resampled"])
    assert {"mean_before", "std_before", "mean_after", "std_after", "role", "shape"} <= rec.keys()


def test_bad_variant_options(tiny):
    with pytest.raises(UserError, match="unknown variant"):
        make_variant(tiny, "shuffled")
    with pytest.raises(UserError, match="noise"):
        make_variant(tiny, "control", noise=cast(Any, "sometimes"))  # not a NoiseMode, on purpose


def _hub_cache_repo(cache, repo_id: str, revisions: dict[str, int]) -> None:
    """Lay out `repo_id` in a Hugging Face hub cache as a download would: one snapshot per revision
    (a tiny GPT-NeoX model of the given seed plus a word-level tokenizer), refs naming each."""
    import hashlib

    from conftest import tiny_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(96)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    for rev, seed in revisions.items():
        commit = hashlib.sha1(f"{repo_id}@{rev}".encode()).hexdigest()
        snap = repo / "snapshots" / commit
        tiny_model("gpt_neox", seed=seed).model.save_pretrained(snap)
        PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w0", unk_token="w0").save_pretrained(snap)
        (repo / "refs" / rev).write_text(commit)


def test_step0_takes_the_published_revision_of_a_hub_model(tmp_path, monkeypatch):
    """Offline, through the real hub cache: a repo with a `step0` revision gives that checkpoint; one without falls back and says why."""
    from huggingface_hub import constants

    from nullsae.models import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _hub_cache_repo(tmp_path, "tiny-org/with-step0", {"main": 0, "step0": 7})
    _hub_cache_repo(tmp_path, "tiny-org/no-step0", {"main": 0})
    loaded = load_model("tiny-org/with-step0")
    var, manifest = make_variant(loaded, "step0", seed=3)
    assert manifest.step0_source == "revision step0 of tiny-org/with-step0"
    published = load_model("tiny-org/with-step0", revision="step0")
    assert all(torch.equal(p, q) for p, q in zip(var.model.parameters(), published.model.parameters()))
    assert not torch.equal(next(var.model.parameters()), next(loaded.model.parameters()))
    with pytest.warns(UserWarning, match="no step0 revision"):
        _, manifest = make_variant(load_model("tiny-org/no-step0"), "step0", seed=3)
    assert manifest.step0_source is not None and manifest.step0_source.startswith("from_config(seed=3): no step0 revision available")
