"""Load a causal LM from the bundled SmolLM2 GGUF, a GGUF file, a local folder or a Hugging Face hub id.

GGUF checkpoints are de-quantised by transformers on every load (~20 s for SmolLM2), so the first
load writes a plain safetensors copy (model + tokenizer) under the nullsae cache and later loads read
that copy in well under a second. Hub ids are looked up in the local HF cache first; when they are
missing and the hub cannot be reached, loading fails at once instead of waiting on network retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from nullsae import assets
from nullsae.errors import UserError, advice
from nullsae.extras import require

BUNDLED = "smollm2"


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its tokenizer and the shape facts the pipeline needs.

    `source` says where the weights came from (hub id, folder or GGUF path) and `revision` which
    hub revision, so that `step0` can look for a published initial checkpoint of the same model.
    """

    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any  # transformers tokenizer, or None for models built from a config in tests
    name: str
    n_layers: int
    d_model: int
    bos_id: int | None
    source: str = ""
    revision: str | None = None
    variant: str = "trained"  # slug of the null model (VariantManifest.slug)

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any = None, name: str = "model", source: str = "", revision: str | None = None
    ) -> LoadedModel:
        """Wrap an already built HF causal LM (eval mode, no gradients) and read its shape from the config."""
        model.eval().requires_grad_(False)
        cfg = model.config
        bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
        if bos is None and tokenizer is not None:
            bos = getattr(tokenizer, "eos_token_id", None)
        if bos is None:
            bos = getattr(cfg, "bos_token_id", None)
        if isinstance(bos, list):
            bos = bos[0]
        return cls(
            model=model,
            tokenizer=tokenizer,
            name=name,
            n_layers=int(cfg.num_hidden_layers),
            d_model=int(cfg.hidden_size),
            bos_id=bos,
            source=source,
            revision=revision,
        )


def cache_root() -> Path:
    """Root of nullsae's own cache: $NULLSAE_CACHE, else ~/.cache/nullsae."""
    return Path(os.environ.get("NULLSAE_CACHE") or Path.home() / ".cache" / "nullsae")


def load_model(
    spec: str = BUNDLED, revision: str | None = None, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Load `spec`: "smollm2" (bundled), a .gguf path, a local model folder, or a hub id (with `revision`).

    Raises UserError (one line, naming the fix) for a missing path, an unparseable GGUF, an unknown or
    unreachable hub id, and a model that needs remote code when `trust_remote_code` is off.
    """
    if spec == BUNDLED:
        return _load_gguf(assets.smollm2_gguf(), dtype, name=BUNDLED)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file {spec} does not exist; give the path of a .gguf model file")
        return _load_gguf(path.resolve(), dtype, name=path.stem)
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.is_dir():
            raise UserError(
                f"model path {spec} does not exist or is not a folder; give a model folder, a .gguf file, a hub id or 'smollm2'"
            )
        if revision is not None:
            raise UserError(f"a revision applies to hub ids, not to the local folder {spec}; drop it or pass a hub id")
        _check_remote_code(path / "config.json", spec, trust_remote_code)
        return _from_pretrained(
            str(path.resolve()), spec=spec, name=path.name, revision=None, trust_remote_code=trust_remote_code, dtype=dtype, local_only=True
        )
    return _load_hub(spec, revision, trust_remote_code, dtype)


def _gguf_cache_dir(path: Path) -> Path:
    st = path.stat()
    digest = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{path.stem}-{digest}"


def _load_gguf(path: Path, dtype: torch.dtype, name: str) -> LoadedModel:
    """Load a GGUF checkpoint through its plain safetensors copy, writing that copy on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _gguf_cache_dir(path)
    if not (cached / "model.safetensors").is_file():
        require("gguf", "gguf")
        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as exc:  # the GGUF reader raises many types (ValueError, KeyError, struct.error, ...)
            raise UserError(
                f"could not parse GGUF file {path} ({type(exc).__name__}: {_first_line(exc)}); check that it is a complete GGUF model of a supported architecture"
            ) from exc
        # The de-quantised model is plain float weights; drop the GGUF marker so it can be saved.
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.hf_quantizer = None  # pyright: ignore[reportArgumentType]  # torch types Module.__setattr__'s value as Tensor | Module; any value is allowed
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=cached.name + ".tmp-", dir=cached.parent))
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "nullsae_source.json").write_text(json.dumps({"gguf": str(path)}), encoding="utf-8")
            if cached.exists():  # another process finished first
                shutil.rmtree(tmp)
            else:
                tmp.rename(cached)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _from_pretrained(str(cached), spec=str(path), name=name, revision=None, trust_remote_code=False, dtype=dtype, local_only=True)


def _from_pretrained(
    where: str, spec: str, name: str, revision: str | None, trust_remote_code: bool, dtype: torch.dtype, local_only: bool
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code, local_files_only=local_only)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # loading local safetensors takes a second; keep stderr clean
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(f"model {spec} needs its own code from the hub; {_remote_code_advice()}") from exc
        raise UserError(f"could not load model {spec}: {_first_line(exc)}") from exc
    except Exception as exc:  # a truncated or corrupt weight file raises the safetensors or torch error types
        raise UserError(
            f"could not load model {spec} ({type(exc).__name__}: {_first_line(exc)}); check that the folder holds a complete checkpoint"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return LoadedModel.from_model(model, tokenizer, name=name, source=spec, revision=revision)


def _remote_code_advice() -> str:
    return advice(
        "--trust-remote-code",
        "rerun with --trust-remote-code if you trust it",
        "this command does not run a model's own code; give a model of an architecture transformers supports",
    )


def _check_remote_code(config_file: Path, spec: str, trust_remote_code: bool) -> None:
    """Refuse a checkpoint whose config maps to custom code unless the user opted in."""
    if not config_file.is_file():
        raise UserError(f"{spec} has no config.json; give a Hugging Face model folder, a .gguf file or a hub id")
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{config_file} is not valid JSON ({exc.msg}); fix or replace the checkpoint") from exc
    if "auto_map" in cfg and not trust_remote_code:
        raise UserError(f"model {spec} needs its own code (config.json has auto_map); {_remote_code_advice()}")


def _load_hub(repo_id: str, revision: str | None, trust_remote_code: bool, dtype: torch.dtype) -> LoadedModel:
    """Hub id: use the local HF cache when it has the snapshot, else download unless offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    name = repo_id.split("/")[-1] + (f"@{revision}" if revision else "")
    try:
        local = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except HFValidationError as exc:
        raise UserError(
            f"'{repo_id}' is neither an existing path nor a valid hub id; give a model folder, a .gguf file, a hub id or 'smollm2'"
        ) from exc
    except Exception:
        local = None
    if local is not None:
        _check_remote_code(Path(local) / "config.json", repo_id, trust_remote_code)
        return _from_pretrained(
            local, spec=repo_id, name=name, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype, local_only=True
        )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"} or not hub_reachable():
        raise UserError(
            f"model '{repo_id}'{' revision ' + revision if revision else ''} is not in the local Hugging Face cache and the hub is unreachable; download it where there is network or pass a local folder or .gguf file"
        )
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        local = snapshot_download(
            repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja"]
        )
    except RevisionNotFoundError as exc:
        raise UserError(f"model '{repo_id}' has no revision '{revision}'; check the revision name") from exc
    except RepositoryNotFoundError as exc:
        raise UserError(f"model '{repo_id}' does not exist on the hub (or is private); check the id") from exc
    except Exception as exc:
        raise UserError(f"could not download model '{repo_id}': {_first_line(exc)}") from exc
    _check_remote_code(Path(local) / "config.json", repo_id, trust_remote_code)
    return _from_pretrained(
        local, spec=repo_id, name=name, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype, local_only=True
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the HF endpoint answers a TCP connect; with a proxy configured, assume it does."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
