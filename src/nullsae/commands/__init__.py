"""CLI subcommands: each module has `add_parser(subparsers)` and sets `func` to its `run(args)`.

`SAEInput` is the `--sae` option every command that reads one SAE shares (a folder, a file in it,
`hf:ORG/REPO[/SUBFOLDER][@REV]`, or `--release` with `--sae-id`); `open_sae` loads it through
`nullsae.sae.hub` and finds the layer it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nullsae.errors import UserError


class SAEInput(BaseModel):
    """Which SAE a command reads, and at which layer."""

    model_config = ConfigDict(extra="forbid")

    sae: str | None = Field(
        None,
        description="SAE folder (nullsae, SAELens, sparsify or dictionary_learning format), a file in it, or hf:ORG/REPO[/SUBFOLDER][@REV]",
    )
    release: str | None = Field(None, description="SAELens release name (with --sae-id), from the installed sae-lens registry")
    sae_id: str | None = Field(None, description="SAE id within --release")
    layer: int | None = Field(
        None, ge=0, description="layer the SAE reads (output of block ℓ, 0-based; default: the layer its files record)"
    )


class SAEModelInput(SAEInput):
    """An SAE and the model (and null variant of it) whose activations it reads."""

    model: str | None = Field(None, description="model the SAE belongs to (default: the model its files record, else smollm2)")
    variant: str = Field("trained", description="model variant: trained | rerandomized | rerandomized-excl-emb | step0 | control")

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        from nullsae.config import check_variants

        return check_variants([v])[0]


@dataclass(frozen=True)
class OpenedSAE:
    """A loaded SAE, what its files say (format, hook, model) and where it came from."""

    sae: Any
    source: Any
    folder: Path
    label: str
    layer: int | None


def _local_folder(given: SAEInput) -> Path | None:
    """The folder of a local --sae (a weights file stands for its folder, where cfg.json lies); None for a hub SAE."""
    if given.release is not None or given.sae is None or given.sae.startswith("hf:"):
        return None
    path = Path(given.sae)
    if not path.exists():
        raise UserError(f"SAE {given.sae} does not exist; give an SAE folder, a file in it, or hf:ORG/REPO[/SUBFOLDER][@REV]")
    return path.parent if path.is_file() else path


def open_sae(given: SAEInput) -> OpenedSAE:
    """Load the SAE named by `given` and settle its layer: the one its files record, or --layer (which must agree)."""
    from nullsae.sae.hub import load_named

    local = _local_folder(given)
    sae, source, ref = load_named(given.sae if local is None else str(local), given.release, given.sae_id)
    if given.layer is not None and source.layer is not None and given.layer != source.layer:
        raise UserError(f"the SAE reads {source.hook} (layer {source.layer}), not --layer {given.layer}; drop --layer")
    layer = given.layer if given.layer is not None else source.layer
    return OpenedSAE(sae, source, ref.folder, ref.label, layer)


def check_layer_early(given: SAEModelInput) -> None:
    """Refuse a --layer the model lacks before the SAE (and torch) loads: the model is --model, else the one a
    local SAE's files name (`nullsae.sae.source`, as the loaders read it), else smollm2; a hub SAE is checked once it loads."""
    from nullsae.model_shape import check_layer_in_config
    from nullsae.sae.source import read_source

    if given.layer is None:
        return
    local = _local_folder(given)
    if given.model is not None or local is not None:
        check_layer_in_config(given.model or (local and read_source(local).model) or "smollm2", [given.layer])


def sae_and_model(given: SAEModelInput) -> tuple[OpenedSAE, str, int]:
    """The SAE, the model it reads (--model, else its files', else smollm2) and its layer, checked against
    the model's config before any weights load."""
    from nullsae.model_shape import check_layer_in_config

    check_layer_early(given)
    opened = open_sae(given)
    if opened.layer is None:
        raise UserError(f"{opened.label} does not say which layer it reads; give --layer")
    model = given.model or opened.source.model or "smollm2"
    check_layer_in_config(model, [opened.layer])
    return opened, model, opened.layer


def loaded_variant(model: str, variant: str) -> Any:
    """The trained model `model` turned into `variant` (the variant's default seed and settings)."""
    from nullsae.models import load_model, make_variant

    return make_variant(load_model(model), variant)[0]
