"""Training gives the numbers it gave before the architecture registry: every architecture trained from scratch
for 4 steps matches, bit for bit, the SAEs that the flat pre-registry code saved at step 4 (tests/data/legacy-saes,
written at 65781a0). Longer runs old against new: benchmarks/same_numbers.py, docs/results/refactor-reproduction.md."""

import torch
from safetensors.torch import load_file
from test_sae_legacy import DATA, _configs, _Stream

from nullsae.sae import SAE
from nullsae.sae.train import TrainConfig, train_saes


def test_training_from_scratch_reproduces_the_pre_registry_saes_bit_for_bit():
    saes = {name: SAE(cfg) for name, cfg in _configs().items()}
    train_saes(saes, _Stream(), TrainConfig(steps=8, lr=1e-2, warmup_steps=0, checkpoint_every=4), progress=False, stop_after=4)
    for name, sae in saes.items():
        ours = sae.state_dict()
        saved = load_file(str(DATA / name / "sae.safetensors"))
        shared = saved.keys() & ours.keys()  # the flat layout kept a penalty buffer the TopK family no longer has
        assert {"W_enc", "b_enc", "W_dec", "b_dec"} <= shared, name
        for key in shared:
            assert torch.equal(ours[key], saved[key]), f"{name}.{key}"
