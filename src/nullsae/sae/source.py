"""What an SAE folder's files say beyond its weights: its format and where it reads (hook, layer, model).

Torch-free, so a command can check a --layer against the model an SAE names before torch loads; the
loaders in `nullsae.sae.io` read the same answer from here, so a new format's fields are taught once.

nullsae: cfg.json `trained_on` {model, layer, hook}; a run's SAE saved before it was recorded
(`cells/<key>/sae/`) reads model and layer from the cell's cell.json. SAELens: cfg.json `hook_name` and
`model_name` (or the same under `metadata`). sparsify: the folder's name (`layers.L`). dictionary_learning:
config.json `trainer.submodule_name` or `trainer.layer`, and `trainer.lm_name`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nullsae.errors import UserError, advice

Format = Literal["nullsae", "saelens", "sparsify", "dictionary_learning"]


@dataclass(frozen=True)
class SAESource:
    """What an SAE's files say beyond its weights: its format and where it reads (hook, layer, model)."""

    folder: Path
    fmt: Format
    hook: str | None = None
    layer: int | None = None
    model: str | None = None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or one UserError line naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-save the SAE") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not an object; re-save the SAE")
    return data


def read_cfg(folder: Path) -> dict[str, Any]:
    """The folder's SAE config as stored (empty for Gemma Scope, whose config comes from the SAELens registry)."""
    if (folder / "cfg.json").exists():
        return read_json(folder / "cfg.json")
    if (folder / "config.json").exists() and (folder / "ae.pt").exists():
        return read_json(folder / "config.json")
    if (folder / "params.npz").exists():
        return {}
    raise UserError(
        f"no cfg.json in {folder}; point {advice('--sae', '--sae', 'nullsae')} at a folder written by nullsae, SAELens, sparsify or dictionary_learning"
    )


def detect_format(path: str | Path, cfg: dict[str, Any] | None = None) -> Format:
    """Which on-disk format the folder holds (`cfg`: its config, if a registry supplied or amended it)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"SAE folder {folder} does not exist; give the folder holding cfg.json")
    cfg = read_cfg(folder) if cfg is None else cfg
    if cfg.get("format") == "nullsae":
        return "nullsae"
    if "architecture" in cfg and "d_sae" in cfg:
        return "saelens"
    if "k" in cfg and (folder / "sae.safetensors").exists():
        return "sparsify"
    if isinstance(cfg.get("trainer"), dict) and (folder / "ae.pt").exists():
        return "dictionary_learning"
    if (folder / "params.npz").exists():
        raise UserError(
            f"{folder} holds a Gemma Scope params.npz without its config; load it with {advice('--release', '--release and --sae-id', '`nullsae audit --release … --sae-id …`')}"
        )
    raise UserError(f"{folder}/cfg.json is not a nullsae, SAELens, sparsify or dictionary_learning SAE config")


def layer_of_hook(hook: str) -> int:
    """The residual-stream layer a hook reads (layer ℓ = the output of block ℓ), or one UserError line.

    SAELens / TransformerLens: blocks.L.hook_resid_post is block L's output, blocks.L.hook_resid_pre
    block L−1's; sparsify: [prefix.]layers.L is block L's output; dictionary_learning: resid_post_layer_L.
    """
    if m := re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook):
        layer = int(m.group(1)) - (m.group(2) == "pre")
        if layer < 0:
            raise UserError(f"the SAE reads hook '{hook}' (the embeddings), which nullsae does not hook; it audits the output of a block")
        return layer
    if m := re.fullmatch(r"(?:[\w.]*\.)?layers\.(\d+)|resid_post_layer_(\d+)", hook):
        return int(m.group(1) or m.group(2))
    raise UserError(
        f"the SAE reads hook '{hook}'; nullsae audits residual-stream SAEs only "
        "(blocks.L.hook_resid_post / hook_resid_pre, layers.L, resid_post_layer_L)"
    )


def _cell_info(folder: Path) -> tuple[str | None, int | None, str | None]:
    """Hook, layer and model of a run's SAE (`cells/<key>/sae/`) from its cell.json; Nones elsewhere."""
    cell = folder.parent / "cell.json"
    if folder.name != "sae" or not cell.is_file():
        return None, None, None
    try:
        info = read_json(cell)
    except (UserError, OSError):
        return None, None, None
    layer, model = info.get("layer"), info.get("model")
    layer = layer if isinstance(layer, int) else None
    return (f"blocks.{layer}.hook_resid_post" if layer is not None else None), layer, (model if isinstance(model, str) else None)


def read_source(path: str | Path, cfg: dict[str, Any] | None = None) -> SAESource:
    """Format, hook, layer and model of the SAE in folder `path`, from its files alone (`cfg`: its config,
    if a registry supplied or amended it). One UserError line for a folder no loader reads."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"SAE folder {folder} does not exist; give the folder holding cfg.json")
    cfg = read_cfg(folder) if cfg is None else cfg
    fmt = detect_format(folder, cfg)
    if fmt == "nullsae":
        where = cfg.get("trained_on") or {}
        hook, layer, model = where.get("hook"), where.get("layer"), where.get("model")
        cell_hook, cell_layer, cell_model = _cell_info(folder)
        return SAESource(folder, fmt, hook or cell_hook, layer if layer is not None else cell_layer, model or cell_model)
    if fmt == "saelens":
        meta = cfg.get("metadata") or {}
        hook = cfg.get("hook_name") or meta.get("hook_name")
        return SAESource(folder, fmt, hook, layer_of_hook(hook) if hook else None, cfg.get("model_name") or meta.get("model_name"))
    if fmt == "sparsify":
        hook = folder.name if re.fullmatch(r"(?:[\w.]*\.)?layers\.\d+(?:\.\w+)*", folder.name) else None
        return SAESource(folder, fmt, hook, layer_of_hook(hook) if hook else None, None)
    trainer = cfg["trainer"]
    sub = trainer.get("submodule_name")
    hook = sub if sub else (f"resid_post_layer_{trainer['layer']}" if trainer.get("layer") is not None else None)
    return SAESource(folder, fmt, hook, layer_of_hook(hook) if hook else None, trainer.get("lm_name"))
