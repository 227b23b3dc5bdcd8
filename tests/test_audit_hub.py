"""SAEs found by name, offline: hf: repos (SAELens, sparsify, dictionary_learning layouts) and SAELens
releases resolved through the installed sae-lens registry, laid out in a local Hugging Face cache."""

import pytest
import torch
from hub_helpers import offline_hub, put_in_hf_cache

from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.hub import load_named, parse_hf
from nullsae.sae.io import save_sae

D, M, K = 32, 128, 4
RELEASE, SAE_ID = "gpt2-small-res-jb", "blocks.2.hook_resid_pre"  # a release in sae-lens's registry (native layout)


def _sae(seed=3):
    return SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, seed=seed)).eval()


def test_parse_hf_names():
    assert parse_hf("hf:org/repo") == ("org/repo", None, None)
    assert parse_hf("hf:org/repo/layers.6@v1.0") == ("org/repo", "layers.6", "v1.0")
    assert parse_hf("hf:org/repo/a/b/c") == ("org/repo", "a/b/c", None)
    with pytest.raises(UserError, match="hf:ORG/REPO"):
        parse_hf("hf:justone")


def test_saelens_sae_by_hf_repo_and_by_release(tmp_path, monkeypatch):
    pytest.importorskip("sae_lens")
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    cache = tmp_path / "hub"
    offline_hub(monkeypatch, cache)
    sae = _sae()
    files = save_sae(sae, tmp_path / "files", fmt="saelens", hook="blocks.2.hook_resid_post", model="tiny-llama")
    put_in_hf_cache(cache, "someone/tiny-saes", files, "layer_2")
    x = torch.randn(64, D)
    loaded, source, _ = load_named("hf:someone/tiny-saes/layer_2")
    assert (source.fmt, source.layer, source.model) == ("saelens", 2, "tiny-llama")
    assert torch.equal(loaded.encode(x), sae.encode(x))

    entry = get_pretrained_saes_directory()[RELEASE]
    put_in_hf_cache(cache, entry.repo_id, files, entry.saes_map[SAE_ID])
    loaded, source, ref = load_named(None, RELEASE, SAE_ID)
    assert source.layer == 2 and ref.label == f"release {RELEASE} / {SAE_ID}"
    assert torch.equal(loaded.encode(x), sae.encode(x))


def test_sparsify_and_dictionary_learning_saes_by_hf_repo(tmp_path, monkeypatch):
    sparsify = pytest.importorskip("sparsify")
    cache = tmp_path / "hub"
    offline_hub(monkeypatch, cache)
    coder = sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=M, k=K))
    coder.save_to_disk(tmp_path / "sp" / "layers.1")
    put_in_hf_cache(cache, "someone/sparsify-saes", tmp_path / "sp" / "layers.1", "layers.1")
    _, source, _ = load_named("hf:someone/sparsify-saes/layers.1")
    assert (source.fmt, source.layer) == ("sparsify", 1)

    dl = pytest.importorskip("dictionary_learning")
    from test_io import save_dictionary_learning

    folder = save_dictionary_learning(dl.AutoEncoder(D, M), tmp_path / "dl", "AutoEncoder", layer=1)
    put_in_hf_cache(cache, "someone/dl-saes", folder, "resid_post_layer_1/trainer_0")
    _, source, _ = load_named("hf:someone/dl-saes/resid_post_layer_1/trainer_0")
    assert (source.fmt, source.layer, source.model) == ("dictionary_learning", 1, "tiny")


def test_bad_names_are_one_line_each(tmp_path, monkeypatch):
    pytest.importorskip("sae_lens")
    offline_hub(monkeypatch, tmp_path / "hub")
    with pytest.raises(UserError, match="unknown SAELens release 'gpt2-small-res-jbb'; did you mean gpt2-small-res-jb"):
        load_named(None, "gpt2-small-res-jbb", SAE_ID)
    with pytest.raises(UserError, match=f"SAE id 'blocks.99.hook_resid_pre' is not in release '{RELEASE}'"):
        load_named(None, RELEASE, "blocks.99.hook_resid_pre")
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_named(None, RELEASE, SAE_ID)
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_named("hf:nobody/nothing")
    with pytest.raises(UserError, match="either --sae, or --release with --sae-id"):
        load_named("x", RELEASE, None)


def test_gemma_scope_release_takes_its_config_from_sae_lens(tmp_path, monkeypatch):
    """A Gemma Scope release id resolves to params.npz with the config sae-lens derives (here d = 2304,
    m = 16,384, layer 12 of gemma-2-2b); a small stand-in file shows the config was applied."""
    pytest.importorskip("sae_lens")
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    from test_io import _gemma_scope_npz

    cache = tmp_path / "hub"
    offline_hub(monkeypatch, cache)
    release, sae_id = "gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82"
    entry = get_pretrained_saes_directory()[release]
    _gemma_scope_npz(tmp_path / "g")
    put_in_hf_cache(cache, entry.repo_id, tmp_path / "g", entry.saes_map[sae_id])
    with pytest.raises(UserError, match=r"tensor 'W_enc' has shape \(16, 64\), cfg.json implies \(2304, 16384\)"):
        load_named(None, release, sae_id)
    with pytest.raises(UserError, match="residual-stream SAEs only"):  # an MLP-output release is refused by its hook
        mlp = get_pretrained_saes_directory()["gemma-scope-2b-pt-mlp"]
        mid = next(iter(mlp.saes_map))
        put_in_hf_cache(cache, mlp.repo_id, tmp_path / "g", mlp.saes_map[mid])
        load_named(None, "gemma-scope-2b-pt-mlp", mid)
