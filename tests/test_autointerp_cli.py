"""`nullsae autointerp` on a cached run of the bundled model with a saved SAE; bad input → one line, exit 2."""

import pandas as pd
import pytest
import torch

from nullsae import cli


def test_missing_sae_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["autointerp", "--sae", str(tmp_path / "nope"), "--layer", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nullsae autointerp: error:") and "does not exist" in err[0]


@pytest.mark.slow
def test_autointerp_on_cached_activations(smollm2, tmp_path, monkeypatch, capsys):
    import nullsae.models
    from nullsae.activations import fill_cache
    from nullsae.data import token_windows
    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    windows = token_windows(smollm2.tokenizer, smollm2.bos_id, 128, 32, split="interp")
    fill_cache(smollm2, windows, [3], tmp_path / "cache", progress=False)
    torch.manual_seed(0)
    sae = SAE(SAEConfig(arch="topk", d_in=smollm2.d_model, n_latents=256, k=8))
    sae_dir = save_sae(sae, tmp_path / "sae")
    monkeypatch.setattr(nullsae.models, "load_model", lambda spec="smollm2", **kw: smollm2)  # reuse the session's model
    argv = [
        "autointerp",
        "--sae",
        str(sae_dir),
        "--layer",
        "3",
        "--activations",
        str(tmp_path / "cache"),
        "--explainer",
        "tokens",
        "--scorers",
        "tokens",
        "--n-latents-sampled",
        "5",
        "--min-examples",
        "20",
        "--out",
        str(tmp_path / "out"),
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "removed by min_examples=20" in out and "tokens / tokens" in out
    df = pd.read_parquet(tmp_path / "out" / "latents.parquet")
    assert len(df) == 5 and df["explanation"].str.startswith("tokens: ").all()
    assert cli.main(argv) == 0  # resumes: everything already scored
    assert "AUROC" in capsys.readouterr().out
