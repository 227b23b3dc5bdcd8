"""A model's depth and width read from its config alone (config.json or GGUF metadata), without torch or
weights, so that a bad layer is refused before a model loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nullsae.errors import UserError

BUNDLED = "smollm2"
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_WIDTH = ("hidden_size", "n_embd", "d_model")


@dataclass(frozen=True)
class ConfigShape:
    n_layers: int
    d_model: int | None


def _from_json(cfg: dict[str, Any]) -> ConfigShape | None:
    cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model's
    layers = next((cfg[k] for k in _LAYERS if isinstance(cfg.get(k), int)), None)
    width = next((cfg[k] for k in _WIDTH if isinstance(cfg.get(k), int)), None)
    return ConfigShape(layers, width) if layers is not None else None


def _from_gguf(path: Path) -> ConfigShape | None:
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        reader = GGUFReader(str(path))
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

        def value(key: str) -> int | None:
            field = reader.fields.get(f"{arch}.{key}")
            return int(field.parts[-1][0]) if field is not None else None

        layers = value("block_count")
    except Exception:  # an unreadable file is reported by the loader, with its own message
        return None
    return ConfigShape(layers, value("embedding_length")) if layers is not None else None


def config_shape(spec: str, revision: str | None = None) -> ConfigShape | None:
    """Depth and width of `spec` ("smollm2", a .gguf file, a local folder, or a hub id in the local hub cache),
    or None when its config cannot be read without loading (the loader then says why)."""
    if spec == BUNDLED:
        from nullsae import assets

        try:
            return _from_gguf(assets.smollm2_gguf())
        except UserError:
            return None
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return _from_gguf(path) if path.is_file() else None
    if path.is_dir():
        config = path / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        cached = try_to_load_from_cache(spec.partition("@")[0], "config.json", revision=revision or spec.partition("@")[2] or None)
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    try:
        return _from_json(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def check_layer_in_config(spec: str, layers: list[int], revision: str | None = None) -> None:
    """Refuse a layer outside the model's range, read from its config (nothing if the config cannot be read)."""
    shape = config_shape(spec, revision)
    if shape is None:
        return
    bad = [layer for layer in layers if not 0 <= layer < shape.n_layers]
    if bad:
        raise UserError(f"layer {bad[0]} is out of range; this model has layers 0..{shape.n_layers - 1} ({spec}, read from its config)")
