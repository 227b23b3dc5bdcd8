"""`--sae` takes what `audit` takes in every command that reads one SAE: probe, edit and autointerp find a SAELens
SAE by `hf:ORG/REPO/SUBFOLDER` in a local (offline) Hugging Face cache, with its layer and model from its files."""

from __future__ import annotations

import pytest
from hub_helpers import offline_hub, put_in_hf_cache
from runner_helpers import tiny_model_dir

from nullsae.cli import main

REPO = "someone/tiny-saes"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.mark.slow
def test_probe_edit_and_autointerp_read_an_sae_by_hf_name(tiny_dir, tmp_path, monkeypatch, capsys):
    import torch

    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    torch.manual_seed(0)
    files = save_sae(
        SAE(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)),
        tmp_path / "sae",
        fmt="saelens",
        hook="blocks.1.hook_resid_post",
        model=str(tiny_dir),
    )
    offline_hub(monkeypatch, tmp_path / "hub")
    put_in_hf_cache(tmp_path / "hub", REPO, files, "layer1")
    labelled = tmp_path / "tasks.csv"
    rows = [f"{'a cat sat on the mat' if i % 2 else 'the stock market fell'} number {i},{'cats' if i % 2 else 'money'}" for i in range(40)]
    labelled.write_text("text,label\n" + "\n".join(rows) + "\n")
    spec = f"hf:{REPO}/layer1"
    commands = {
        "probe": ["--tasks", str(labelled), "--n-train", "8", "--n-test", "6", "--ks", "1", "--max-tokens", "16"],
        "edit": ["--grid", "1,4", "--max-pairs", "4", "--min-facts", "2", "--selection", "mask", "--mask-epochs", "1"],
        "autointerp": ["--tokens", "512", "--window", "16", "--n-latents-sampled", "3", "--min-examples", "2", "--scorers", "tokens"],
    }
    for command, extra in commands.items():
        rc = main([command, "--sae", spec, "--out", str(tmp_path / command), *extra])
        out, err = capsys.readouterr()
        assert rc == 0, f"{command}: {err}"
        assert (tmp_path / command).exists(), command
    assert main(["probe", "--sae", spec, "--layer", "2", *commands["probe"]]) == 2
    assert "not --layer 2; drop --layer" in capsys.readouterr().err
    assert main(["edit", "--sae", "hf:someone/missing-repo"]) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err
