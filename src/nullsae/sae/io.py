"""Save and load SAEs: nullsae's own format and the SAELens and sparsify on-disk formats.

nullsae:  <dir>/cfg.json {"format": "nullsae", "version": 1, "sae": SAEConfig} + <dir>/sae.safetensors
SAELens:  <dir>/cfg.json {"architecture": "standard"|"topk"|"jumprelu", "d_in", "d_sae", ...}
          + <dir>/sae_weights.safetensors {W_enc (d, m), b_enc, W_dec (m, d), b_dec[, threshold (m)]}
sparsify: <dir>/cfg.json {"activation": "topk", "k", "num_latents", "d_in", ...}
          + <dir>/sae.safetensors {encoder.weight (m, d), encoder.bias, W_dec (m, d), b_dec}
BatchTopK and Matryoshka SAEs export to SAELens as JumpReLU with their inference threshold (as
SAELens itself does). Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from nullsae.errors import UserError
from nullsae.io_utils import atomic_write_text
from nullsae.sae.architectures import SAE
from nullsae.sae.config import SAEConfig

Format = Literal["nullsae", "saelens", "sparsify"]
FORMAT_VERSION = 1


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def _load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise UserError(f"{path} is missing; point --sae at a folder written by nullsae, SAELens or sparsify")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise UserError(f"{path} is not a readable safetensors file ({exc}); re-save or re-download the SAE") from None


def _read_cfg(folder: Path) -> dict:
    path = folder / "cfg.json"
    if not path.exists():
        raise UserError(f"no cfg.json in {folder}; point --sae at a folder written by nullsae, SAELens or sparsify")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-save the SAE") from None


def save_sae(sae: SAE, path: str | Path, fmt: Format = "nullsae") -> Path:
    """Write `sae` to folder `path` in the given format; returns the folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    if fmt == "nullsae":
        _save_tensors(dict(sae.state_dict()), folder / "sae.safetensors")
        atomic_write_text(folder / "cfg.json", json.dumps({"format": "nullsae", "version": FORMAT_VERSION, "sae": cfg.model_dump()}, indent=2))
    elif fmt == "saelens":
        tensors = {"W_enc": sae.W_enc.T, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
        extra: dict = {}
        if cfg.arch == "relu":
            architecture = "standard"
        elif cfg.arch == "topk":
            architecture, extra = "topk", {"k": cfg.k}
        else:
            architecture = "jumprelu"
            if cfg.arch == "jumprelu":
                tensors["threshold"] = sae.log_threshold.exp()
            else:
                tensors["threshold"] = sae.threshold.clamp_min(0).expand(cfg.n_latents)
        _save_tensors(tensors, folder / "sae_weights.safetensors")
        saelens_cfg = {
            "architecture": architecture,
            "d_in": cfg.d_in,
            "d_sae": cfg.n_latents,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": {"nullsae_arch": cfg.arch, "nullsae_baseline": cfg.baseline},
            **extra,
        }
        atomic_write_text(folder / "cfg.json", json.dumps(saelens_cfg, indent=2))
    elif fmt == "sparsify":
        if cfg.arch != "topk":
            raise UserError(f"sparsify stores TopK SAEs only; a {cfg.arch} SAE can be saved as nullsae or saelens")
        tensors = {"encoder.weight": sae.W_enc, "encoder.bias": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
        _save_tensors(tensors, folder / "sae.safetensors")
        sp_cfg = {
            "activation": "topk",
            "expansion_factor": max(1, cfg.n_latents // cfg.d_in),
            "normalize_decoder": cfg.unit_norm_decoder,
            "num_latents": cfg.n_latents,
            "k": cfg.k,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
            "d_in": cfg.d_in,
        }
        atomic_write_text(folder / "cfg.json", json.dumps(sp_cfg, indent=2))
    else:
        raise UserError(f"unknown SAE format '{fmt}'; choose nullsae, saelens or sparsify")
    return folder


def detect_format(path: str | Path) -> Format:
    """Which on-disk format the folder holds."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"SAE folder {folder} does not exist; give the folder holding cfg.json")
    cfg = _read_cfg(folder)
    if cfg.get("format") == "nullsae":
        return "nullsae"
    if "architecture" in cfg and "d_sae" in cfg:
        return "saelens"
    if "k" in cfg and (folder / "sae.safetensors").exists():
        return "sparsify"
    raise UserError(f"{folder}/cfg.json is not a nullsae, SAELens or sparsify SAE config")


def _check_shapes(folder: Path, tensors: dict[str, Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    for name, shape in expected.items():
        if name not in tensors:
            raise UserError(f"{folder}: weights lack tensor '{name}'; the checkpoint does not match its cfg.json")
        if tuple(tensors[name].shape) != shape:
            raise UserError(
                f"{folder}: tensor '{name}' has shape {tuple(tensors[name].shape)}, cfg.json implies {shape}; the checkpoint is mismatched"
            )


def load_sae(path: str | Path) -> SAE:
    """Load an SAE from a nullsae, SAELens or sparsify folder (detected from cfg.json)."""
    folder = Path(path)
    fmt = detect_format(folder)
    raw = _read_cfg(folder)
    try:
        if fmt == "nullsae":
            cfg = SAEConfig.model_validate(raw["sae"])
        elif fmt == "saelens":
            arch = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}.get(raw["architecture"])
            if arch is None:
                raise UserError(f"SAELens architecture '{raw['architecture']}' is not supported; nullsae reads standard, topk and jumprelu")
            cfg = SAEConfig(arch=arch, d_in=raw["d_in"], n_latents=raw["d_sae"], k=int(raw.get("k", 32)), normalize_decoder=arch != "relu")
            if raw.get("normalize_activations", "none") != "none":
                raise UserError(f"SAELens SAE uses normalize_activations='{raw['normalize_activations']}', which nullsae does not apply; re-export it with 'none'")
        else:
            if raw.get("activation", "topk") != "topk" or raw.get("transcode") or raw.get("skip_connection"):
                raise UserError("only plain TopK sparsify SAEs (no groupmax, transcoder or skip connection) are supported")
            n = int(raw.get("num_latents") or raw["d_in"] * raw["expansion_factor"])
            cfg = SAEConfig(arch="topk", d_in=raw["d_in"], n_latents=n, k=int(raw["k"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{folder}/cfg.json is incomplete or invalid ({exc}); re-save the SAE") from None
    sae = SAE(cfg)
    m, d = cfg.n_latents, cfg.d_in
    if fmt == "nullsae":
        tensors = _load_tensors(folder / "sae.safetensors")
        expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
        _check_shapes(folder, tensors, expected)
        sae.load_state_dict(tensors)
    elif fmt == "saelens":
        tensors = _load_tensors(folder / "sae_weights.safetensors")
        _check_shapes(folder, tensors, {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)})
        with torch.no_grad():
            sae.W_enc.copy_(tensors["W_enc"].T)
            sae.b_enc.copy_(tensors["b_enc"])
            sae.W_dec.copy_(tensors["W_dec"])
            sae.b_dec.copy_(tensors["b_dec"])
            if cfg.arch == "jumprelu":
                _check_shapes(folder, tensors, {"threshold": (m,)})
                sae.log_threshold.copy_(tensors["threshold"].clamp_min(1e-12).log())
            sae.W_dec_init.copy_(sae.W_dec)
            sae.initialized.fill_(True)
    else:
        tensors = _load_tensors(folder / "sae.safetensors")
        _check_shapes(folder, tensors, {"encoder.weight": (m, d), "encoder.bias": (m,), "W_dec": (m, d), "b_dec": (d,)})
        with torch.no_grad():
            sae.W_enc.copy_(tensors["encoder.weight"])
            sae.b_enc.copy_(tensors["encoder.bias"])
            sae.W_dec.copy_(tensors["W_dec"])
            sae.b_dec.copy_(tensors["b_dec"])
            sae.W_dec_init.copy_(sae.W_dec)
            sae.initialized.fill_(True)
    if not all(torch.isfinite(t).all() for t in sae.state_dict().values() if t.is_floating_point()):
        raise UserError(f"{folder}: the SAE weights contain NaN or inf; the checkpoint is corrupt")
    return sae.eval()
