"""SAE folders and trainer checkpoints written before the architecture registry (one flat config, one class) still load and resume.

tests/data/legacy-saes/ was written by nullsae at commit 65781a0: every architecture trained 4 of 8
steps (trainer/trainer.pt), each SAE saved in nullsae's format, and their codes on a fixed batch.
"""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import load_sae
from nullsae.sae.train import TrainConfig, train_saes

DATA = Path(__file__).parent / "data" / "legacy-saes"
D, M, K = 8, 32, 3
NAMES = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka", "topk-soft"]


class _Stream:
    """The stream the checkpoint was written on."""

    d_in = D

    def batches(self, start_step=0):
        g = torch.Generator().manual_seed(7)
        feats = torch.nn.functional.normalize(torch.randn(48, D, generator=g), dim=1)
        step = start_step
        while True:
            gs = torch.Generator().manual_seed(100 + step)
            yield (torch.rand(64, 48, generator=gs) < 0.08) * torch.rand(64, 48, generator=gs) @ feats + 0.3
            step += 1


def _configs():
    out = {
        a: SAEConfig(arch=a, d_in=D, n_latents=M, k=K, target_l0=K if a in ("relu", "jumprelu") else None, dead_tokens=128)
        for a in NAMES[:-1]
    }
    out["topk-soft"] = SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, baseline="soft-frozen-decoder", dead_tokens=128)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_old_nullsae_folders_load_with_the_same_codes(name):
    ref = load_file(str(DATA / "outputs.safetensors"))
    sae = load_sae(DATA / name)
    assert sae.cfg == _configs()[name]
    z = sae.encode(ref["x"])
    assert torch.equal(z, ref[f"{name}.z"])
    assert torch.equal(sae.decode(z), ref[f"{name}.recon"])


def test_an_old_trainer_checkpoint_resumes(tmp_path):
    shutil.copytree(DATA / "trainer", tmp_path / "trainer")
    saes = {name: SAE(cfg) for name, cfg in _configs().items()}
    res = train_saes(
        saes,
        _Stream(),
        TrainConfig(steps=8, lr=1e-2, warmup_steps=0, checkpoint_every=4),
        checkpoint_dir=tmp_path / "trainer",
        progress=False,
    )
    ref = load_file(str(DATA / "outputs.safetensors"))
    for name, sae in saes.items():
        assert res[name].steps == 8 and res[name].tokens == 8 * 64
        assert not torch.equal(sae.encode(ref["x"]), ref[f"{name}.z"]), f"{name} did not train on after resuming"
