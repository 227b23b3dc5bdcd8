"""The null models of docs/spec.md#variants: trained | rerandomized | rerandomized-excl-emb | step0 | control.

Written once for any HF causal LM. Parameter roles come from the model itself: the token embedding
and unembedding are `get_input_embeddings()` / `get_output_embeddings()` (tied weights are one
parameter, so they stay tied), and norm parameters belong to modules whose class is a norm. Every
variant returns a manifest (seed, which tensors were resampled, their mean and std before and after).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from nullsae.errors import UserError
from nullsae.io_utils import write_text
from nullsae.models.load import LoadedModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel

VARIANTS = ("trained", "rerandomized", "rerandomized-excl-emb", "step0", "control")
NoiseMode = Literal["fresh", "per-token"]


class TensorRecord(BaseModel):
    """One parameter tensor: its role, whether it was resampled, and its statistics before and after."""

    name: str
    role: str  # embedding | unembedding | embedding+unembedding | norm | other
    shape: list[int]
    resampled: bool
    mean_before: float
    std_before: float
    mean_after: float
    std_after: float


class VariantManifest(BaseModel):
    """What was done to the trained model to build this variant (docs/spec.md#variants), written next to its results."""

    variant: str
    model: str
    seed: int
    keep_norms: bool = False
    noise: NoiseMode | None = None  # control only
    sigma: float | None = None  # control only
    step0_source: str | None = None  # step0 only: "revision step0 of <id>" or "from_config(seed=...)" and why
    tensors: list[TensorRecord] = []

    @property
    def slug(self) -> str:
        """A short file-name-safe id of the variant and its options (used in cache keys)."""
        if self.variant == "trained":
            return "trained"
        parts = [self.variant, f"s{self.seed}"]
        if self.keep_norms and self.variant.startswith("rerandomized"):
            parts.append("keepnorms")
        if self.variant == "control":
            parts += [str(self.noise), f"sigma{self.sigma:g}"]
        return "-".join(parts)

    def write(self, path: str | Path) -> Path:
        """Write the manifest as JSON through the write path (temp file + rename)."""
        return write_text(path, json.dumps(self.model_dump(), indent=1))


def parameter_roles(model: PreTrainedModel) -> dict[str, str]:
    """Role of every (deduplicated) named parameter, found through the HF API and module types."""
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb_w = emb.weight if emb is not None else None
    out_w = out.weight if out is not None else None
    norm_params = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    roles: dict[str, str] = {}
    for name, p in model.named_parameters():
        if p is emb_w and p is out_w:
            roles[name] = "embedding+unembedding"
        elif p is emb_w:
            roles[name] = "embedding"
        elif p is out_w:
            roles[name] = "unembedding"
        elif id(p) in norm_params:
            roles[name] = "norm"
        else:
            roles[name] = "other"
    return roles


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or type(module).__name__.endswith(("Norm", "RMSNorm", "LayerNorm"))


def _stats(p: Tensor) -> tuple[float, float]:
    """Mean and (unbiased) std of all elements; std 0 for a single element."""
    x = p.detach().float()
    if x.numel() == 1:
        return float(x), 0.0
    std, mean = torch.std_mean(x)
    return float(mean), float(std)


def make_variant(
    loaded: LoadedModel, variant: str, seed: int = 42, keep_norms: bool = False, noise: NoiseMode = "fresh", sigma: float = 1.0
) -> tuple[LoadedModel, VariantManifest]:
    """Build `variant` of a trained model (a copy; `loaded` is left untouched) and its manifest."""
    if variant not in VARIANTS:
        raise UserError(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if noise not in ("fresh", "per-token"):
        raise UserError(f"unknown noise mode '{noise}'; choose fresh or per-token")
    if not sigma > 0:
        raise UserError(f"the control noise sigma must be positive, got {sigma}")
    manifest = VariantManifest(variant=variant, model=loaded.name, seed=seed, keep_norms=keep_norms)
    resampled: set[str] = set()
    if variant == "trained":
        model = loaded.model
    elif variant.startswith("rerandomized"):
        model = copy.deepcopy(loaded.model)
        skip = {"embedding", "unembedding", "embedding+unembedding"} if variant == "rerandomized-excl-emb" else set()
        if keep_norms:
            skip.add("norm")
        resampled = _rerandomize(model, skip, seed)
    elif variant == "step0":
        model, manifest.step0_source = _step0(loaded, seed)
        resampled = {name for name, _ in model.named_parameters()}
    else:  # a new module tree sharing the trained parameters (no second copy of the weights)
        model = copy.deepcopy(loaded.model, memo={id(p): p for p in loaded.model.parameters()})
        manifest.noise, manifest.sigma = noise, float(sigma)
        emb = model.get_input_embeddings()
        emb.register_forward_hook(EmbeddingNoise(noise, sigma, seed, vocab=emb.weight.shape[0]))
    manifest.tensors = _records(loaded.model, model, resampled)
    out = LoadedModel.from_model(model, loaded.tokenizer, name=loaded.name, source=loaded.source, revision=loaded.revision)
    out.bos_id = loaded.bos_id
    out.variant = manifest.slug
    return out, manifest


def _rerandomize(model: PreTrainedModel, skip_roles: set[str], seed: int) -> set[str]:
    """p ← randn_like(p)·std(p) + mean(p) for every parameter whose role is not skipped; one seed for all.
    Returns the names of the resampled parameters."""
    gen = torch.Generator().manual_seed(seed)
    roles = parameter_roles(model)
    done = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if roles[name] in skip_roles:
                continue
            done.add(name)
            mean, std = _stats(p)
            fresh = torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(std).add_(mean)
            p.copy_(fresh)
    return done


def _step0(loaded: LoadedModel, seed: int) -> tuple[PreTrainedModel, str]:
    """The published `step0` revision of a hub model when it can be had, else the seeded initialiser."""
    from nullsae.models.load import load_model

    reason = "the model is not a hub checkpoint"
    if _is_hub_id(loaded.source):
        try:
            published = load_model(loaded.source, revision="step0", dtype=next(loaded.model.parameters()).dtype)
            device = next(loaded.model.parameters()).device
            return published.model.to(device), f"revision step0 of {loaded.source}"
        except UserError as exc:
            reason = f"no step0 revision available ({exc})"
            warnings.warn(f"step0 of {loaded.source}: {reason}; using the architecture's initialiser with seed {seed}", stacklevel=3)
    base = loaded.model
    param = next(base.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = type(base)(copy.deepcopy(base.config))
    model.to(device=param.device, dtype=param.dtype).eval().requires_grad_(False)
    return model, f"from_config(seed={seed}): {reason}"


def _is_hub_id(source: str) -> bool:
    return (
        bool(source)
        and "/" in source
        and not source.endswith(".gguf")
        and not Path(source).expanduser().exists()
        and not source.startswith((".", "/", "~"))
    )


def _records(before: PreTrainedModel, after: PreTrainedModel, resampled: set[str]) -> list[TensorRecord]:
    """Per-tensor statistics of the trained model and of the variant, matched by parameter name."""
    roles = parameter_roles(after)
    old = dict(before.named_parameters())
    records = []
    for name, p in after.named_parameters():
        mb, sb = _stats(old[name]) if name in old else (float("nan"), float("nan"))
        ma, sa = _stats(p) if name in resampled else (mb, sb)
        records.append(
            TensorRecord(
                name=name,
                role=roles[name],
                shape=list(p.shape),
                resampled=name in resampled,
                mean_before=mb,
                std_before=sb,
                mean_after=ma,
                std_after=sa,
            )
        )
    return records


class EmbeddingNoise:
    """Forward hook on the input embedding that returns N(0, σ²) noise of the same shape (control variant).

    `fresh`: new noise at every position of every forward pass (seeded generator, advancing per call).
    `per-token`: one fixed seeded noise vector per token id, so repeated passes agree.
    """

    def __init__(self, mode: NoiseMode, sigma: float, seed: int, vocab: int) -> None:
        self.mode, self.sigma, self.seed, self.vocab = mode, sigma, seed, vocab
        self._gens: dict[torch.device, torch.Generator] = {}
        self._table: Tensor | None = None

    def __call__(self, _module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if self.mode == "per-token":
            if self._table is None or self._table.device != output.device:
                gen = torch.Generator(device=output.device).manual_seed(self.seed)
                self._table = torch.randn(self.vocab, output.shape[-1], generator=gen, device=output.device) * self.sigma
            return self._table[inputs[0]].to(output.dtype)
        gen = self._gens.get(output.device)
        if gen is None:
            gen = self._gens[output.device] = torch.Generator(device=output.device).manual_seed(self.seed)
        return (torch.randn(output.shape, generator=gen, device=output.device) * self.sigma).to(output.dtype)
