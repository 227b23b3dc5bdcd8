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


def open_sae(given: SAEInput) -> OpenedSAE:
    """Load the SAE named by `given` and settle its layer: the one its files record, or --layer (which must agree)."""
    from nullsae.sae.hub import load_named

    spec = given.sae
    if spec is not None and not spec.startswith("hf:"):
        path = Path(spec)
        if not path.exists():
            raise UserError(f"SAE {spec} does not exist; give an SAE folder, a file in it, or hf:ORG/REPO[/SUBFOLDER][@REV]")
        spec = str(path.parent if path.is_file() else path)  # a weights file stands for its folder (cfg.json lies beside it)
    sae, source, ref = load_named(spec, given.release, given.sae_id)
    source = _with_cell_info(source, ref.folder)
    if given.layer is not None and source.layer is not None and given.layer != source.layer:
        raise UserError(f"the SAE reads {source.hook} (layer {source.layer}), not --layer {given.layer}; drop --layer")
    layer = given.layer if given.layer is not None else source.layer
    return OpenedSAE(sae, source, ref.folder, ref.label, layer)


def _with_cell_info(source: Any, folder: Path) -> Any:
    """An SAE trained by a nullsae run (`cells/<key>/sae`) reads the model and layer its cell.json records."""
    import dataclasses
    import json

    cell = folder.parent / "cell.json"
    if source.fmt != "nullsae" or folder.name != "sae" or not cell.is_file():
        return source
    try:
        info = json.loads(cell.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return source
    layer, model = info.get("layer"), info.get("model")
    hook = f"blocks.{layer}.hook_resid_post" if isinstance(layer, int) else None
    return dataclasses.replace(
        source, layer=source.layer if source.layer is not None else layer, model=source.model or model, hook=source.hook or hook
    )


def _model_in_files(spec: str | None) -> str | None:
    """The model a local SAE folder's files name (nullsae trained_on or cell.json, SAELens model_name,
    dictionary_learning lm_name), read without torch; None when they name none."""
    import json

    if spec is None or not Path(spec).exists():
        return None
    folder = Path(spec).parent if Path(spec).is_file() else Path(spec)

    def read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    cfg, config = read(folder / "cfg.json"), read(folder / "config.json")
    named = (
        (cfg.get("trained_on") or {}).get("model")
        or cfg.get("model_name")
        or (cfg.get("metadata") or {}).get("model_name")
        or (config.get("trainer") or {}).get("lm_name")
    )
    if named is None and cfg.get("format") == "nullsae" and folder.name == "sae":
        named = read(folder.parent / "cell.json").get("model")
    return named if isinstance(named, str) else None


def check_layer_early(given: SAEModelInput) -> None:
    """Refuse a --layer the model lacks before the SAE (and torch) loads: the model is --model, else the one a
    local SAE's files name (read as the loaders read them), else smollm2; a hub SAE is checked once it loads."""
    from nullsae.model_shape import check_layer_in_config

    local = given.release is None and given.sae is not None and not given.sae.startswith("hf:")
    if given.layer is not None and (given.model is not None or local):
        check_layer_in_config(given.model or _model_in_files(given.sae) or "smollm2", [given.layer])


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
