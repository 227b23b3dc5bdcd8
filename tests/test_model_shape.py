"""A model's depth and width from its config alone: config.json, a GGUF header, the bundled SmolLM2; a bad layer refused."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from nullsae.errors import UserError
from nullsae.model_shape import ConfigShape, check_layer_in_config, config_shape


def _gguf(path, entries):
    """A GGUF v3 header with the given (key, type, value) metadata and no tensors."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries))
    for key, kind, value in entries:
        out += string(key) + struct.pack("<I", kind)
        if kind == 8:
            out += string(value)
        elif kind == 9:  # an array of strings, as the tokenizer's vocabulary
            out += struct.pack("<IQ", 8, len(value)) + b"".join(string(v) for v in value)
        else:
            out += struct.pack({4: "<I", 6: "<f"}[kind], value)
    path.write_bytes(out)
    return path


def test_gguf_header_and_config_json(tmp_path):
    entries = [
        ("general.architecture", 8, "llama"),
        ("tokenizer.ggml.tokens", 9, ["<s>", "a", "bé"]),
        ("llama.rope.freq_base", 6, 10000.0),
        ("llama.block_count", 4, 5),
        ("llama.embedding_length", 4, 16),
    ]
    assert config_shape(str(_gguf(tmp_path / "m.gguf", entries))) == ConfigShape(5, 16)
    assert config_shape(str(_gguf(tmp_path / "no-depth.gguf", entries[:3]))) is None
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(7))
    assert config_shape(str(tmp_path / "broken.gguf")) is None  # the loader reports it
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "hidden_size": 32}))
    assert config_shape(str(folder)) == ConfigShape(3, 32)
    with pytest.raises(UserError, match=r"layer 3 is out of range; this model has layers 0\.\.2"):
        check_layer_in_config(str(folder), [0, 3])
    check_layer_in_config(str(tmp_path / "nowhere"), [99])  # no config to read: the loader checks later


def test_the_bundled_model_is_read_from_its_header_without_torch():
    from nullsae import assets

    try:
        assets.smollm2_gguf()
    except UserError:
        pytest.skip("the bundled SmolLM2 is not installed")
    code = "import sys; from nullsae.model_shape import config_shape; print(config_shape('smollm2')); assert 'torch' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "n_layers=30, d_model=576" in res.stdout, res.stderr
