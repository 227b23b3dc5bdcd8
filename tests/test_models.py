"""Model loading: the bundled GGUF through its safetensors cache, local folders, and every bad input."""

from __future__ import annotations

import json

import pytest
import torch

from nullsae import assets
from nullsae.errors import UserError
from nullsae.models import load_model
from nullsae.models.load import _gguf_cache_dir


@pytest.mark.slow
def test_bundled_smollm2(smollm2):
    assert smollm2.name == "smollm2" and smollm2.n_layers == 30 and smollm2.d_model == 576
    assert smollm2.bos_id == smollm2.tokenizer.bos_token_id is not None
    assert not smollm2.model.training and not any(p.requires_grad for p in smollm2.model.parameters())
    assert smollm2.model.get_input_embeddings().weight is smollm2.model.get_output_embeddings().weight
    cached = _gguf_cache_dir(assets.smollm2_gguf())
    assert (cached / "model.safetensors").is_file() and (cached / "tokenizer.json").is_file()
    cfg = json.loads((cached / "config.json").read_text())
    assert "quantization_config" not in cfg


def test_local_folder_roundtrip(tmp_path):
    from conftest import tiny_model
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    loaded = tiny_model("gpt2")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<bos>": 0, "a": 1, "[UNK]": 2}, unk_token="[UNK]")), bos_token="<bos>"
    )
    loaded.model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again = load_model(str(tmp_path / "m"))
    assert again.n_layers == 3 and again.d_model == 32 and again.bos_id == 0
    ids = torch.tensor([[0, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, loaded.model(ids).logits)


def test_missing_path():
    with pytest.raises(UserError, match="does not exist"):
        load_model("./no/such/model")
    with pytest.raises(UserError, match="does not exist"):
        load_model("/tmp/definitely-missing.gguf")


def test_unknown_hub_id_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_model("nobody-xyz/no-such-model-123")
    with pytest.raises(UserError, match="valid hub id"):
        load_model("not a model!!")


def test_unparseable_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("NULLSAE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UserError, match="could not parse GGUF"):
        load_model(str(bad))
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())


def test_remote_code_needs_the_flag(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mymodel", "auto_map": {"AutoModelForCausalLM": "modeling_my.MyModel"}}))
    with pytest.raises(UserError, match="--trust-remote-code"):
        load_model(str(folder))


def test_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path))
