"""Save/load in nullsae, SAELens and sparsify formats, round-tripped against the real libraries."""

import json
from importlib import import_module

import pytest
import torch

from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.archs.batchtopk import BatchTopKSAE
from nullsae.sae.config import ARCHS
from nullsae.sae.io import load_sae, save_sae
from nullsae.sae.source import detect_format

D, M, K = 16, 64, 4


def _trained(arch, baseline="none"):
    torch.manual_seed(0)
    x = torch.randn(256, D) + 1
    sae = SAE(SAEConfig(arch=arch, d_in=D, n_latents=M, k=K, baseline=baseline))
    sae.initialize(x)
    with torch.no_grad():  # move every parameter away from its init so a mix-up would show
        for p in sae.parameters():
            p.add_(0.01 * torch.randn_like(p))
        sae.b_enc.add_(0.05)
        if isinstance(sae, BatchTopKSAE):  # batchtopk and matryoshka
            sae.threshold.fill_(0.2)
    return sae.eval(), x


@pytest.mark.parametrize("arch", ARCHS)
def test_nullsae_format_round_trip(tmp_path, arch):
    sae, x = _trained(arch, "soft-frozen-decoder")
    save_sae(sae, tmp_path / "s")
    assert detect_format(tmp_path / "s") == "nullsae"
    back = load_sae(tmp_path / "s")
    assert back.cfg == sae.cfg
    for key, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert torch.equal(back.encode(x), sae.encode(x))


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk", "gated"])
def test_saelens_format_against_the_real_library(tmp_path, arch):
    sae_lens = pytest.importorskip("sae_lens")
    sae, x = _trained(arch)
    save_sae(sae, tmp_path / "s", fmt="saelens")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "s"))
    with torch.no_grad():
        z_theirs = theirs.encode(x)
        z_ours = sae.encode(x)
        assert torch.allclose(z_theirs, z_ours, atol=1e-5)
        assert torch.allclose(theirs.decode(z_theirs), sae.decode(z_ours), atol=1e-5)
    # and back: what SAELens itself writes, nullsae reads
    theirs.save_model(str(tmp_path / "t"))
    back = load_sae(tmp_path / "t")
    assert torch.allclose(back.encode(x), z_ours, atol=1e-5)


def test_sparsify_format_against_the_real_library(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    sae, x = _trained("topk")
    save_sae(sae, tmp_path / "s", fmt="sparsify")
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "s")
    with torch.no_grad():
        enc = theirs.encode(x)
        dense = torch.zeros(x.shape[0], M).scatter_(1, enc.top_indices, enc.top_acts)
        assert torch.allclose(dense, sae.encode(x), atol=1e-5)
        assert torch.allclose(theirs.decode(enc.top_acts, enc.top_indices), sae.decode(sae.encode(x)), atol=1e-5)
    theirs.save_to_disk(tmp_path / "t")
    back = load_sae(tmp_path / "t")
    assert torch.allclose(back.encode(x), sae.encode(x), atol=1e-5)
    with pytest.raises(UserError, match="TopK SAEs only"):
        save_sae(_trained("relu")[0], tmp_path / "u", fmt="sparsify")


def test_corrupt_and_mismatched_files_are_user_errors(tmp_path):
    sae, _ = _trained("topk")
    save_sae(sae, tmp_path / "s")
    (tmp_path / "s" / "sae.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_sae(tmp_path / "s")
    save_sae(sae, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "cfg.json").read_text())
    cfg["sae"]["n_latents"] = 2 * M
    (tmp_path / "m" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="mismatched"):
        load_sae(tmp_path / "m")
    (tmp_path / "m" / "cfg.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_sae(tmp_path / "m")
    with pytest.raises(UserError, match="does not exist"):
        load_sae(tmp_path / "nowhere")


# ----- every config field that changes encode or decode, against the peer libraries' own code ---------


def _randomised(module, seed=0):
    """Give every float parameter of a peer's SAE random values (their inits leave biases at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen) + (0.05 if "threshold" in name else 0.0))
            if "threshold" in name:
                p.abs_()
    return module


def _x(n=256, seed=1):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) + 0.5


SAELENS_SETTINGS = [
    ("standard", {}),
    ("standard", {"apply_b_dec_to_input": False}),
    ("topk", {}),
    ("topk", {"apply_b_dec_to_input": False}),
    ("topk", {"rescale_acts_by_decoder_norm": True}),
    ("topk", {"rescale_acts_by_decoder_norm": True, "apply_b_dec_to_input": False}),
    ("jumprelu", {}),
    ("jumprelu", {"apply_b_dec_to_input": False}),
    ("jumprelu", {"rescale_acts_by_decoder_norm": True}),  # SAELens ignores the field here, and so must nullsae
    ("topk", {"dtype": "bfloat16"}),
    ("gated", {}),
    ("gated", {"apply_b_dec_to_input": False}),
]


@pytest.mark.parametrize("arch,fields", SAELENS_SETTINGS, ids=[f"{a}-{'-'.join(f) or 'default'}" for a, f in SAELENS_SETTINGS])
def test_saelens_fields_encode_as_saelens_does(tmp_path, arch, fields):
    sae_lens = pytest.importorskip("sae_lens")
    from nullsae.sae.io import load_sae_source

    cfg = {
        "architecture": arch,
        "d_in": D,
        "d_sae": M,
        "k": K,
        "metadata": {"hook_name": "blocks.2.hook_resid_post", "model_name": "tiny"},
        **fields,
    }
    theirs = _randomised(sae_lens.SAE.from_dict({**cfg, "dtype": "float32"}))
    theirs.save_model(str(tmp_path / "s"))
    raw = json.loads((tmp_path / "s" / "cfg.json").read_text())
    (tmp_path / "s" / "cfg.json").write_text(
        json.dumps({**raw, **{k: v for k, v in fields.items() if k != "dtype"}})
    )  # every field in the file
    if "dtype" in fields:  # a bf16 checkpoint: nullsae upcasts and computes in float32, as SAELens does with dtype=float32
        raw = json.loads((tmp_path / "s" / "cfg.json").read_text())
        raw["dtype"] = fields["dtype"]
        (tmp_path / "s" / "cfg.json").write_text(json.dumps(raw))
        theirs = _randomised(sae_lens.SAE.from_dict({**cfg, "dtype": "float32"}))
        with torch.no_grad():
            for p in theirs.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        theirs.save_model(str(tmp_path / "s"))
        (tmp_path / "s" / "cfg.json").write_text(json.dumps(raw))
        theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "s"), dtype="float32")
    ours, source = load_sae_source(tmp_path / "s")
    assert (source.fmt, source.hook, source.layer, source.model) == ("saelens", "blocks.2.hook_resid_post", 2, "tiny")
    x = _x()
    with torch.no_grad():
        z_theirs, z_ours = theirs.encode(x), ours.encode(x)
        assert torch.equal(z_theirs != 0, z_ours != 0)  # the same active latents
        assert torch.allclose(z_ours, z_theirs, atol=1e-4, rtol=1e-4)
        assert torch.allclose(ours.decode(z_ours), theirs.decode(z_theirs), atol=1e-4, rtol=1e-4)


def test_saelens_norm_scaling_factor_folds_as_saelens_does(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    from nullsae.sae.io import load_sae_source

    cfg = {"architecture": "topk", "d_in": D, "d_sae": M, "k": K, "normalize_activations": "expected_average_only_in"}
    theirs = _randomised(sae_lens.SAE.from_dict(cfg))
    theirs.save_model(str(tmp_path / "s"))
    with pytest.raises(UserError, match="normalize_activations = 'expected_average_only_in'.*--release"):
        load_sae_source(tmp_path / "s")
    ours, _ = load_sae_source(tmp_path / "s", norm_scaling_factor=2.5)
    theirs.fold_activation_norm_scaling_factor(2.5)  # what SAELens's from_pretrained does with the registry's factor
    x = _x()
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-4)
        assert torch.allclose(ours.decode(ours.encode(x)), theirs.decode(theirs.encode(x)), atol=1e-4)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("normalize_activations", "constant_norm_rescale", "normalize_activations"),
        ("normalize_activations", "layer_norm", "normalize_activations"),
        ("reshape_activations", "hook_z", "reshape_activations"),
        ("architecture", "matching_pursuit", "architecture"),
        ("hook_name", "blocks.2.hook_mlp_out", "residual-stream"),
        ("hook_name", "blocks.0.hook_resid_pre", "embeddings"),
        ("dtype", "int8", "dtype"),
    ],
)
def test_saelens_fields_nullsae_cannot_apply_are_refused_by_name(tmp_path, field, value, match):
    sae, _ = _trained("topk")
    save_sae(sae, tmp_path / "s", fmt="saelens")
    raw = json.loads((tmp_path / "s" / "cfg.json").read_text())
    raw[field] = value
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match=match):
        load_sae(tmp_path / "s")


def test_sparsify_hookpoint_and_fields(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    from nullsae.sae.io import load_sae_source

    theirs = _randomised(sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=M, k=K)))
    theirs.save_to_disk(tmp_path / "model.layers.2")
    ours, source = load_sae_source(tmp_path / "model.layers.2")
    assert (source.fmt, source.layer) == ("sparsify", 2)
    x = _x()
    with torch.no_grad():
        enc = theirs.encode(x)
        dense = torch.zeros(x.shape[0], M).scatter_(1, enc.top_indices, enc.top_acts)
        assert torch.allclose(ours.encode(x), dense, atol=1e-5)
        assert torch.allclose(ours.decode(ours.encode(x)), theirs.decode(enc.top_acts, enc.top_indices), atol=1e-5)
    for field, value in (("activation", "groupmax"), ("transcode", True), ("skip_connection", True)):
        raw = json.loads((tmp_path / "model.layers.2" / "cfg.json").read_text())
        (tmp_path / "f").mkdir(exist_ok=True)
        (tmp_path / "f" / "sae.safetensors").write_bytes((tmp_path / "model.layers.2" / "sae.safetensors").read_bytes())
        (tmp_path / "f" / "cfg.json").write_text(json.dumps({**raw, field: value}))
        with pytest.raises(UserError, match=field):
            load_sae(tmp_path / "f")


def _dictionary_learning_classes():
    dl = pytest.importorskip("dictionary_learning")
    trainers = {name: import_module(f"dictionary_learning.trainers.{name}") for name in ("batch_top_k", "matryoshka_batch_top_k", "top_k")}

    return {
        "AutoEncoder": lambda: dl.AutoEncoder(D, M),
        "AutoEncoderTopK": lambda: trainers["top_k"].AutoEncoderTopK(D, M, K),
        "BatchTopKSAE": lambda: trainers["batch_top_k"].BatchTopKSAE(D, M, K),
        "MatryoshkaBatchTopKSAE": lambda: trainers["matryoshka_batch_top_k"].MatryoshkaBatchTopKSAE(D, M, K, [M // 2, M // 4, M // 4]),
        "JumpReluAutoEncoder": lambda: dl.JumpReluAutoEncoder(D, M),
    }


def save_dictionary_learning(ae, folder, dict_class, layer=2, lm_name="tiny"):
    """What dictionary_learning's trainSAE writes: ae.pt (a state dict) and config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ae.state_dict(), folder / "ae.pt")
    trainer = {
        "dict_class": dict_class,
        "activation_dim": ae.activation_dim,
        "dict_size": ae.dict_size,
        "k": K,
        "layer": layer,
        "lm_name": lm_name,
        "submodule_name": f"resid_post_layer_{layer}",
    }
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    return folder


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"])
def test_dictionary_learning_encodes_as_dictionary_learning_does(tmp_path, dict_class):
    from nullsae.sae.io import load_sae_source

    theirs = _randomised(_dictionary_learning_classes()[dict_class]())
    if hasattr(theirs, "threshold") and theirs.threshold.dim() == 0:
        theirs.threshold.fill_(0.3)
    folder = save_dictionary_learning(theirs, tmp_path / "dl", dict_class)
    ours, source = load_sae_source(folder)
    assert (source.fmt, source.layer, source.model) == ("dictionary_learning", 2, "tiny")
    x = _x()
    with torch.no_grad():
        z_theirs, z_ours = theirs.encode(x), ours.encode(x)
        assert torch.equal(z_theirs != 0, z_ours != 0)
        assert torch.allclose(z_ours, z_theirs, atol=1e-5)
        assert torch.allclose(ours.decode(z_ours), theirs.decode(z_theirs), atol=1e-5)


def test_dictionary_learning_pickles_and_unfinished_thresholds_are_refused(tmp_path):
    classes = _dictionary_learning_classes()
    ae = classes["AutoEncoder"]()
    folder = save_dictionary_learning(ae, tmp_path / "p", "AutoEncoder")
    torch.save(ae, folder / "ae.pt")  # the whole module: loading it would run unpickling code
    with pytest.raises(UserError, match="not a plain state dict"):
        load_sae(folder)
    torch.save({"encoder.weight": [1, 2]}, folder / "ae.pt")  # loads, but is no state dict of tensors
    with pytest.raises(UserError, match="not a plain state dict"):
        load_sae(folder)
    folder = save_dictionary_learning(classes["BatchTopKSAE"](), tmp_path / "b", "BatchTopKSAE")
    with pytest.raises(UserError, match="threshold"):
        load_sae(folder)
    folder = save_dictionary_learning(classes["AutoEncoder"](), tmp_path / "g", "GatedAutoEncoder")
    with pytest.raises(UserError, match="dict_class"):
        load_sae(folder)


def _gemma_scope_npz(folder, seed=0):
    """A params.npz as Gemma Scope ships it (lower-case w_ keys, a unit scaling factor), small."""
    import numpy as np

    gen = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "w_enc": gen.normal(size=(D, M)).astype("float32"),
        "w_dec": gen.normal(size=(M, D)).astype("float32"),
        "b_enc": gen.normal(size=M).astype("float32"),
        "b_dec": gen.normal(size=D).astype("float32"),
        "threshold": np.abs(gen.normal(size=M)).astype("float32"),
        "scaling_factor": np.ones(1, dtype="float32"),
    }
    np.savez(folder / "params.npz", **arrays)
    return arrays


def test_gemma_scope_npz_encodes_as_saelens_does(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    from nullsae.sae.io import load_sae_source

    arrays = _gemma_scope_npz(tmp_path / "g")
    # what sae-lens's get_gemma_2_config_from_hf gives, at this size
    cfg = {
        "architecture": "jumprelu",
        "d_in": D,
        "d_sae": M,
        "dtype": "float32",
        "model_name": "gemma-2-2b",
        "hook_name": "blocks.2.hook_resid_post",
        "hook_head_index": None,
        "apply_b_dec_to_input": False,
        "normalize_activations": None,
        "finetuning_scaling_factor": False,
    }
    with pytest.raises(UserError, match="without its config"):
        load_sae(tmp_path / "g")
    ours, source = load_sae_source(tmp_path / "g", cfg_overrides=cfg)
    assert (source.layer, source.model) == (2, "gemma-2-2b")
    theirs = sae_lens.SAE.from_dict({**cfg, "normalize_activations": "none", "metadata": {"hook_name": cfg["hook_name"]}})
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"):
            getattr(theirs, name).copy_(torch.from_numpy(arrays[name.replace("W_", "w_")]))
    x = _x()
    with torch.no_grad():
        assert torch.equal(theirs.encode(x) != 0, ours.encode(x) != 0)
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-4)
        assert torch.allclose(ours.decode(ours.encode(x)), theirs.decode(theirs.encode(x)), atol=1e-4)
