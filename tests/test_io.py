"""Save/load in nullsae, SAELens and sparsify formats, round-tripped against the real libraries."""

import json

import pytest
import torch

from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.config import ARCHS
from nullsae.sae.io import detect_format, load_sae, save_sae

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
        if arch in ("batchtopk", "matryoshka"):
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


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk"])
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
