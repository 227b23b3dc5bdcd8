"""`read_source`: the format, hook, layer and model an SAE folder's files name, read without torch, and the same
answer the loaders give (so the early --layer check and the loaded SAE cannot disagree)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from nullsae.cli import main
from nullsae.errors import UserError
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import load_sae_source, save_sae
from nullsae.sae.source import SAESource, read_source

D, M, K = 8, 32, 3


def _sae() -> SAE:
    torch.manual_seed(0)
    return SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K))


def _run_cell(root, trained_on=None):
    """A run's SAE at cells/<key>/sae beside its cell.json; `trained_on=None`: saved before SAEs recorded it."""
    cell = root / "cells" / "abc"
    folder = save_sae(_sae(), cell / "sae", trained_on=trained_on)
    (cell / "cell.json").write_text(json.dumps({"model": "the-model", "variant": "trained", "layer": 4}))
    return folder


def _dictionary_learning(folder, **trainer):
    """dictionary_learning's config.json beside ae.pt (read_source reads no weights)."""
    folder.mkdir(parents=True)
    (folder / "ae.pt").write_bytes(b"")
    (folder / "config.json").write_text(
        json.dumps({"trainer": {"dict_class": "AutoEncoder", "activation_dim": D, "dict_size": M, **trainer}})
    )
    return folder


def test_every_format_names_its_hook_layer_and_model(tmp_path):
    on = {"model": "m", "variant": "trained", "layer": 2, "hook": "blocks.2.hook_resid_post"}
    cases = {
        "nullsae": (save_sae(_sae(), tmp_path / "n", trained_on=on), ("nullsae", "blocks.2.hook_resid_post", 2, "m")),
        "nullsae, nothing recorded": (save_sae(_sae(), tmp_path / "bare"), ("nullsae", None, None, None)),
        "run folder before trained_on": (_run_cell(tmp_path / "old"), ("nullsae", "blocks.4.hook_resid_post", 4, "the-model")),
        "run folder with trained_on": (_run_cell(tmp_path / "new", on), ("nullsae", "blocks.2.hook_resid_post", 2, "m")),
        "saelens": (
            save_sae(_sae(), tmp_path / "s", fmt="saelens", hook="blocks.3.hook_resid_pre", model="gpt2"),
            ("saelens", "blocks.3.hook_resid_pre", 2, "gpt2"),
        ),
        "sparsify": (save_sae(_sae(), tmp_path / "model.layers.5", fmt="sparsify"), ("sparsify", "model.layers.5", 5, None)),
        "dictionary_learning": (
            _dictionary_learning(tmp_path / "dl", layer=3, lm_name="EleutherAI/pythia-70m-deduped"),
            ("dictionary_learning", "resid_post_layer_3", 3, "EleutherAI/pythia-70m-deduped"),
        ),
    }
    for name, (folder, (fmt, hook, layer, model)) in cases.items():
        assert read_source(folder) == SAESource(folder, fmt, hook, layer, model), name
        if fmt != "dictionary_learning":  # its ae.pt here holds no weights; tests/test_io.py loads real ones
            assert load_sae_source(folder)[1] == read_source(folder), name


def test_saelens_reads_top_level_fields_and_a_bad_folder_is_one_line(tmp_path):
    folder = save_sae(_sae(), tmp_path / "s", fmt="saelens")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "hook_name": "blocks.1.hook_resid_post", "model_name": "pythia"}))
    assert (read_source(folder).layer, read_source(folder).model) == (1, "pythia")
    (folder / "cfg.json").write_text(json.dumps({**cfg, "hook_name": "blocks.1.attn.hook_z"}))
    with pytest.raises(UserError, match="residual-stream SAEs only"):
        read_source(folder)
    (folder / "cfg.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not an object"):
        read_source(folder)
    with pytest.raises(UserError, match="does not exist"):
        read_source(tmp_path / "nowhere")


def test_read_source_imports_no_torch(tmp_path):
    folder = _run_cell(tmp_path)
    code = f"import sys; from nullsae.sae.source import read_source; print(read_source({str(folder)!r}).model); assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "the-model"


def test_a_layer_the_model_lacks_is_refused_from_an_old_run_folders_cell_json(tmp_path, capsys):
    """The cell.json fallback serves the early --layer check too: the model it names has 3 layers, so --layer 4 is
    refused from the files alone, before the (here corrupt) weights are read."""
    model = tmp_path / "the-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 32}))
    folder = _run_cell(tmp_path)
    cell = json.loads((folder.parent / "cell.json").read_text())
    (folder.parent / "cell.json").write_text(json.dumps({**cell, "model": str(model)}))
    (folder / "sae.safetensors").write_bytes(b"not safetensors")
    assert main(["probe", "--sae", str(folder), "--layer", "4", "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer 4 is out of range" in err[0], err
