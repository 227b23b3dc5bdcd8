"""Save and load SAEs: nullsae's own format and the SAELens, sparsify and dictionary_learning formats.

nullsae:  <dir>/cfg.json {"format": "nullsae", "version": 1, "sae": SAEConfig} + <dir>/sae.safetensors
SAELens:  <dir>/cfg.json {"architecture": "standard"|"topk"|"jumprelu"|..., "d_in", "d_sae", ...}
          + <dir>/sae_weights.safetensors {W_enc (d, m), b_enc, W_dec (m, d), b_dec[, threshold (m)]}
sparsify: <dir>/cfg.json {"activation": "topk", "k", "num_latents", "d_in", ...}
          + <dir>/sae.safetensors {encoder.weight (m, d), encoder.bias, W_dec (m, d), b_dec}
dictionary_learning: <dir>/config.json {"trainer": {"dict_class", "activation_dim", "dict_size", ...}}
          + <dir>/ae.pt, a plain state dict read with torch.load(weights_only=True)
Gemma Scope: <dir>/params.npz (arrays), its SAELens config from the registry (nullsae.sae.hub)

Every config field that changes encode or decode is either applied or refused with one line naming
it. The applicable ones are folded into nullsae's z = f(W_enc (x − b_dec) + b_enc), x̂ = W_dec z + b_dec:
SAELens `apply_b_dec_to_input: false` (and dictionary_learning's JumpReLU) moves W_enc b_dec into b_enc;
`rescale_acts_by_decoder_norm` scales encoder row j by ‖W_dec,j‖ and divides decoder row j by it (the
latents are then the peer's exactly); `normalize_activations: expected_average_only_in` with a known
scaling factor s folds as SAELens's `fold_activation_norm_scaling_factor` does. Weights stored in
bf16/fp16 are upcast to float32, and nullsae computes in float32.
Each SAE class owns its mapping (`saelens_architecture`, `to_saelens`, `load_saelens`, `to_sparsify`,
`dictionary_learning_class`, `load_dictionary_learning`); BatchTopK and Matryoshka SAEs export to
SAELens as JumpReLU with their inference threshold (as SAELens itself does). Every file is written
to a temporary name and renamed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from nullsae.errors import UserError, advice
from nullsae.io_utils import save_safetensors, write_text
from nullsae.sae.architectures import SAE, sae_class
from nullsae.sae.config import ARCHS, SAEConfig, parse_sae_config
from nullsae.sae.source import Format, SAESource, read_cfg, read_source

FORMAT_VERSION = 1
FLOAT_DTYPES = {"float32", "float16", "bfloat16", "float64", "torch.float32", "torch.float16", "torch.bfloat16", "torch.float64"}


def _classes() -> list[type[SAE]]:
    return [sae_class(a) for a in ARCHS]


def _saelens_archs() -> dict[str, type[SAE]]:
    return {c.saelens_architecture: c for c in _classes() if c.saelens_architecture is not None}


def _dictionary_learning_classes() -> dict[str, type[SAE]]:
    return {c.dictionary_learning_class: c for c in _classes() if c.dictionary_learning_class is not None}


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    save_safetensors(tensors, path)


def _load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise UserError(
            f"{path} is missing; point {advice('--sae', '--sae', 'nullsae')} at a folder written by nullsae, SAELens, sparsify or dictionary_learning"
        )
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise UserError(f"{path} is not a readable safetensors file ({exc}); re-save or re-download the SAE") from None


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    """dictionary_learning's ae.pt: a plain state dict; anything that needs unpickling code is refused."""
    if not path.exists():
        raise UserError(f"{path} is missing; a dictionary_learning SAE folder holds config.json and ae.pt")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a plain state dict of tensors (torch.load with weights_only=True refused it: {first}); "
            "nullsae never unpickles code: re-save it as model.state_dict()"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise UserError(f"{path} is not a plain state dict of tensors; re-save it as model.state_dict()")
    return obj


def _load_npz(path: Path) -> dict[str, Tensor]:
    """Gemma Scope's params.npz (arrays only, never pickles), with SAELens's key names (w_* → W_*)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            tensors = {("W_" + k[2:] if k.startswith("w_") else k): torch.from_numpy(np.array(data[k])) for k in data.files}
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable array file ({exc}); re-download the SAE") from None
    scale = tensors.pop("scaling_factor", None)
    if scale is not None and not torch.allclose(scale.float(), torch.ones_like(scale.float())):
        raise UserError(f"{path}: scaling_factor ≠ 1 (a finetuning scaling factor) is not supported")
    return tensors


def save_sae(
    sae: SAE,
    path: str | Path,
    fmt: Format = "nullsae",
    hook: str | None = None,
    model: str | None = None,
    trained_on: dict[str, Any] | None = None,
) -> Path:
    """Write `sae` to folder `path` in the given format; returns the folder.

    `hook` and `model` (SAELens only) go into its metadata, so SAELens knows where the SAE reads;
    `trained_on` (nullsae only: model, variant, layer, hook) goes into cfg.json, so every command finds them.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    if fmt == "nullsae":
        _save_tensors(dict(sae.state_dict()), folder / "sae.safetensors")
        meta = {"format": "nullsae", "version": FORMAT_VERSION, "sae": cfg.model_dump()}
        write_text(folder / "cfg.json", json.dumps(meta | ({"trained_on": trained_on} if trained_on else {}), indent=2))
    elif fmt == "saelens":
        try:
            architecture, tensors, extra = sae.to_saelens()
        except ValueError:
            raise UserError(f"SAELens has no {cfg.arch} architecture; a {cfg.arch} SAE can be saved as nullsae") from None
        _save_tensors(tensors, folder / "sae_weights.safetensors")
        # sae_lens_version marks the 6.x layout: SAELens reads a cfg without it as pre-6 and drops its metadata
        metadata: dict[str, Any] = {"sae_lens_version": "6.0.0", "nullsae_arch": cfg.arch, "nullsae_baseline": cfg.baseline}
        if hook is not None:
            metadata["hook_name"] = hook
        if model is not None:
            metadata["model_name"] = model
        saelens_cfg = {
            "architecture": architecture,
            "d_in": cfg.d_in,
            "d_sae": cfg.n_latents,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": metadata,
            **extra,
        }
        write_text(folder / "cfg.json", json.dumps(saelens_cfg, indent=2))
    elif fmt == "sparsify":
        to_sparsify = getattr(sae, "to_sparsify", None)
        if cfg.arch != "topk" or to_sparsify is None:
            raise UserError(f"sparsify stores TopK SAEs only; a {cfg.arch} SAE can be saved as nullsae or saelens")
        tensors, sp_cfg = to_sparsify()
        _save_tensors(tensors, folder / "sae.safetensors")
        write_text(folder / "cfg.json", json.dumps(sp_cfg, indent=2))
    else:
        raise UserError(f"unknown SAE format '{fmt}'; choose nullsae, saelens or sparsify")
    return folder


def _check_shapes(folder: Path, tensors: dict[str, Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    for name, shape in expected.items():
        if name not in tensors:
            raise UserError(f"{folder}: weights lack tensor '{name}'; the checkpoint does not match its cfg.json")
        if tuple(tensors[name].shape) != shape:
            raise UserError(
                f"{folder}: tensor '{name}' has shape {tuple(tensors[name].shape)}, cfg.json implies {shape}; the checkpoint is mismatched"
            )


def _refuse(folder: Path, field: str, value: Any, why: str) -> UserError:
    return UserError(f"{folder}: {field} = {value!r} is not supported ({why})")


def _saelens(folder: Path, raw: dict, norm_scaling_factor: float | None) -> SAE:
    meta = raw.get("metadata") or {}
    cls = _saelens_archs().get(raw["architecture"])
    if cls is None:
        raise _refuse(folder, "architecture", raw["architecture"], f"nullsae reads SAELens {', '.join(_saelens_archs())} SAEs")
    if str(raw.get("dtype", "float32")) not in FLOAT_DTYPES:
        raise _refuse(folder, "dtype", raw.get("dtype"), "nullsae reads float weights")
    if raw.get("reshape_activations", "none") != "none":
        raise _refuse(folder, "reshape_activations", raw["reshape_activations"], "nullsae audits residual-stream SAEs only")
    head = raw.get("hook_head_index", meta.get("hook_head_index"))
    if head is not None:
        raise _refuse(folder, "hook_head_index", head, "nullsae audits residual-stream SAEs only")
    norm = raw.get("normalize_activations") or "none"
    if norm == "expected_average_only_in" and norm_scaling_factor is None:
        raise _refuse(
            folder,
            "normalize_activations",
            norm,
            "its scaling factor is not in the files; load it with --release/--sae-id, whose registry entry gives norm_scaling_factor",
        )
    if norm not in ("none", "expected_average_only_in"):
        raise _refuse(folder, "normalize_activations", norm, "a per-token normalisation cannot be folded into the SAE's weights")
    if raw.get("finetuning_scaling_factor"):
        raise _refuse(folder, "finetuning_scaling_factor", raw["finetuning_scaling_factor"], "nullsae does not apply it")
    cfg = cls.config_class(
        d_in=raw["d_in"], n_latents=raw["d_sae"], k=int(raw.get("k", 32)), normalize_decoder=cls.config_class.unit_norm_default
    )
    tensors = _load_npz(folder / "params.npz") if (folder / "params.npz").exists() else _load_tensors(folder / "sae_weights.safetensors")
    sae = SAE(cfg)
    _check_shapes(folder, tensors, sae.saelens_tensors())
    sae.load_saelens(tensors)
    with torch.no_grad():
        if norm == "expected_average_only_in":  # x → s·x in, x̂ → x̂/s out (SAELens fold_activation_norm_scaling_factor)
            s = float(norm_scaling_factor)  # type: ignore[arg-type]
            sae.W_enc.mul_(s)
            sae.W_dec.div_(s)
            sae.b_dec.div_(s)
        if not raw.get("apply_b_dec_to_input", True):
            sae.fold_no_input_centring()
        sae.fold_saelens_fields(raw)
        sae.W_dec_init.copy_(sae.W_dec)
    return sae


def _sparsify(folder: Path, raw: dict) -> SAE:
    if raw.get("activation", "topk") != "topk":
        raise _refuse(folder, "activation", raw["activation"], "nullsae reads TopK sparsify SAEs")
    for field in ("transcode", "skip_connection"):
        if raw.get(field):
            raise _refuse(folder, field, raw[field], "nullsae audits SAEs that reconstruct their own input")
    n = int(raw.get("num_latents") or raw["d_in"] * raw["expansion_factor"])
    sae = SAE(SAEConfig(arch="topk", d_in=raw["d_in"], n_latents=n, k=int(raw["k"])))
    m, d = sae.cfg.n_latents, sae.cfg.d_in
    tensors = _load_tensors(folder / "sae.safetensors")
    _check_shapes(folder, tensors, {"encoder.weight": (m, d), "encoder.bias": (m,), "W_dec": (m, d), "b_dec": (d,)})
    sae.load_weights(tensors["encoder.weight"], tensors["encoder.bias"], tensors["W_dec"], tensors["b_dec"])
    return sae


def _dictionary_learning(folder: Path, raw: dict) -> SAE:
    trainer = raw["trainer"]
    cls = trainer.get("dict_class")
    sae_cls = _dictionary_learning_classes().get(cls)
    if sae_cls is None:
        raise _refuse(folder, "trainer.dict_class", cls, f"nullsae reads {', '.join(_dictionary_learning_classes())}")
    state = _load_state_dict(folder / "ae.pt")
    d, m = int(trainer["activation_dim"]), int(trainer["dict_size"])
    k = int(trainer.get("k") or (state["k"].item() if "k" in state else 32))
    fields = sae_cls.dictionary_learning_fields(state, m)
    sae = SAE(sae_cls.config_class(d_in=d, n_latents=m, k=k, **fields))
    _check_shapes(folder, state, sae.dictionary_learning_tensors())
    try:
        sae.load_dictionary_learning(state)
    except ValueError as exc:
        raise _refuse(folder, "threshold", float(state.get("threshold", torch.tensor(-1.0))), str(exc)) from None
    return sae


def load_sae_source(path: str | Path, norm_scaling_factor: float | None = None, cfg_overrides: dict | None = None) -> tuple[SAE, SAESource]:
    """Load an SAE of any supported format and what its files say about where it reads (`nullsae.sae.source`).

    `norm_scaling_factor` and `cfg_overrides` come from a SAELens registry entry (see nullsae.sae.hub).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"SAE folder {folder} does not exist; give the folder holding cfg.json")
    raw = {**read_cfg(folder), **(cfg_overrides or {})}
    try:
        source = read_source(folder, raw)
        if source.fmt == "nullsae":
            sae = SAE(parse_sae_config(raw["sae"]))
            tensors = _load_tensors(folder / "sae.safetensors")
            _check_shapes(folder, tensors, {k: tuple(v.shape) for k, v in sae.state_dict().items()})
            sae.load_state_dict(tensors)
        elif source.fmt == "saelens":
            sae = _saelens(folder, raw, norm_scaling_factor)
        elif source.fmt == "sparsify":
            sae = _sparsify(folder, raw)
        else:
            sae = _dictionary_learning(folder, raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{folder}: the SAE config is incomplete or invalid ({exc}); re-save the SAE") from None
    if not all(torch.isfinite(t).all() for t in sae.state_dict().values() if t.is_floating_point()):
        raise UserError(f"{folder}: the SAE weights contain NaN or inf; the checkpoint is corrupt")
    return sae.eval(), source


def load_sae(path: str | Path) -> SAE:
    """Load an SAE from a nullsae, SAELens, sparsify or dictionary_learning folder (detected from its config)."""
    return load_sae_source(path)[0]
