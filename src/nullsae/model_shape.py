"""A model's depth and width read from its config alone (config.json or GGUF metadata), without torch or
weights, so that a bad layer is refused before a model loads."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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


# GGUF metadata value types (the GGUF file-format spec in the ggml repository): fixed sizes, 8 = string, 9 = array.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_INTS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


def _gguf_metadata(f: BinaryIO, wanted: set[str]) -> dict[str, Any]:
    """The `wanted` keys of a GGUF file's metadata, read from its header (strings and integers; stops once all are found)."""

    def read(fmt: str) -> Any:
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    def string() -> str:
        return f.read(read("<Q")).decode("utf-8", "replace")

    def skip(kind: int) -> None:
        if kind == 8:
            f.seek(read("<Q"), 1)
        elif kind == 9:
            inner, n = read("<I"), read("<Q")
            if inner in _GGUF_SIZES:
                f.seek(_GGUF_SIZES[inner] * n, 1)
            else:
                for _ in range(n):
                    skip(inner)
        else:
            f.seek(_GGUF_SIZES[kind], 1)

    if f.read(4) != b"GGUF" or read("<I") < 2:
        return {}
    read("<Q")  # tensor count
    found: dict[str, Any] = {}
    for _ in range(read("<Q")):
        key, kind = string(), read("<I")
        if key in wanted and kind == 8:
            found[key] = string()
        elif key in wanted and kind in _GGUF_INTS:
            found[key] = read(_GGUF_INTS[kind])
        else:
            skip(kind)
        if "general.architecture" in found:
            arch = found["general.architecture"]
            wanted = wanted | {f"{arch}.block_count", f"{arch}.embedding_length"}
        if wanted <= found.keys():
            break
    return found


def _from_gguf(path: Path) -> ConfigShape | None:
    try:
        with open(path, "rb") as f:
            meta = _gguf_metadata(f, {"general.architecture"})
    except (OSError, struct.error, KeyError, UnicodeDecodeError):
        return None  # an unreadable file is reported by the loader, with its own message
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    return ConfigShape(layers, meta.get(f"{arch}.embedding_length")) if isinstance(layers, int) else None


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
    elif path.exists() or spec.startswith((".", "/", "~")):
        return None
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo, _, rev = spec.partition("@")
            cached = try_to_load_from_cache(repo, "config.json", revision=revision or rev or None)
        except (ImportError, ValueError):  # no hub client, or not a valid repo id: the loader says which
            return None
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
