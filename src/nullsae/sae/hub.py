"""Find an SAE by name: a local folder, a Hugging Face repo (`hf:ORG/REPO[/SUBFOLDER][@REV]`) or a
SAELens release and SAE id, resolved through the registry (`pretrained_saes.yaml`) that the installed
sae-lens ships. Files come through huggingface_hub's cache, so HF_HUB_OFFLINE=1 reads it without network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nullsae.errors import UserError
from nullsae.extras import require
from nullsae.sae.architectures import SAE
from nullsae.sae.io import load_sae_source
from nullsae.sae.source import SAESource

# SAELens registry layouts nullsae reads with its own loaders (sae.io); others need a converter it lacks.
READABLE_LAYOUTS = ("sae_lens", "sparsify", "dictionary_learning_1", "gemma_2")
HF_SPEC = re.compile(r"hf:(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<sub>[^@]+?))?/?(?:@(?P<rev>[\w./-]+))?")


@dataclass(frozen=True)
class SAERef:
    """Where an SAE's files are and what a registry adds to them."""

    folder: Path
    label: str
    norm_scaling_factor: float | None = None
    cfg_overrides: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


def download(repo_id: str, subfolder: str | None, revision: str | None, label: str) -> Path:
    """The local folder of `repo_id[/subfolder]` at `revision`, from the hub cache (downloaded if online)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        root = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[f"{subfolder}/*"] if subfolder else None))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise UserError(f"{label}: {type(exc).__name__.replace('Error', '')}: check the repo name and revision") from None
    except LocalEntryNotFoundError:
        raise UserError(
            f"{label} is not in the local Hugging Face cache and the hub cannot be reached (HF_HUB_OFFLINE or no network)"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"{label} could not be fetched ({str(exc).splitlines()[0]})") from None
    folder = root / subfolder if subfolder else root
    if not folder.is_dir():
        raise UserError(f"{label}: the repo has no folder '{subfolder}'")
    return folder


def parse_hf(spec: str) -> tuple[str, str | None, str | None]:
    """`hf:ORG/REPO[/SUBFOLDER][@REV]` → (repo id, subfolder, revision)."""
    m = HF_SPEC.fullmatch(spec)
    if not m:
        raise UserError(f"'{spec}' is not an hf: SAE name; write hf:ORG/REPO[/SUBFOLDER][@REVISION]")
    return m["repo"], m["sub"], m["rev"]


def registry_entry(release: str, sae_id: str) -> Any:
    """The installed sae-lens registry's entry of `release`, checked to hold `sae_id`."""
    get_pretrained_saes_directory = require("sae_lens.loading.pretrained_saes_directory", "peers").get_pretrained_saes_directory
    directory = get_pretrained_saes_directory()
    if release not in directory:
        import difflib

        close = difflib.get_close_matches(release, list(directory), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the installed sae-lens knows {len(directory)} releases"
        raise UserError(f"unknown SAELens release '{release}'{hint}")
    entry = directory[release]
    if sae_id not in entry.saes_map:
        ids = list(entry.saes_map)
        raise UserError(f"SAE id '{sae_id}' is not in release '{release}' ({len(ids)} ids, e.g. {', '.join(ids[:4])})")
    return entry


def resolve(spec: str | None, release: str | None = None, sae_id: str | None = None) -> SAERef:
    """Resolve `--sae SPEC` or `--release R --sae-id ID` to the folder of the SAE's files."""
    if release is not None or sae_id is not None:
        if spec is not None or release is None or sae_id is None:
            raise UserError("give either --sae, or --release with --sae-id")
        entry = registry_entry(release, sae_id)
        layout = entry.conversion_func or "sae_lens"
        if layout not in READABLE_LAYOUTS:
            raise UserError(
                f"release '{release}' is stored in the '{layout}' layout, which nullsae does not read (it reads {', '.join(READABLE_LAYOUTS)})"
            )
        label = f"release {release} / {sae_id}"
        folder = download(entry.repo_id, entry.saes_map[sae_id] or None, None, label)
        overrides = {k: v for k, v in (entry.config_overrides or {}).items() if not isinstance(v, dict)}
        if layout == "gemma_2":  # Gemma Scope: params.npz only; SAELens derives the config from the repo and folder names
            from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

            try:
                overrides = get_gemma_2_config_from_hf(entry.repo_id, entry.saes_map[sae_id], device="cpu", cfg_overrides=overrides)
            except ValueError as exc:
                raise UserError(f"{label}: sae-lens cannot derive its config ({exc})") from None
        return SAERef(folder, label, entry.norm_scaling_factor.get(sae_id), overrides, entry.model)
    if spec is None:
        raise UserError("give --sae (a folder or hf:ORG/REPO[/SUBFOLDER][@REV]) or --release with --sae-id")
    if spec.startswith("hf:"):
        repo, sub, rev = parse_hf(spec)
        return SAERef(download(repo, sub, rev, spec), spec)
    return SAERef(Path(spec), spec)


def load_named(spec: str | None, release: str | None = None, sae_id: str | None = None) -> tuple[SAE, SAESource, SAERef]:
    """Resolve and load: the SAE, what its files say about where it reads, and where it came from."""
    ref = resolve(spec, release, sae_id)
    sae, source = load_sae_source(ref.folder, ref.norm_scaling_factor, ref.cfg_overrides)
    if source.model is None and ref.model is not None:
        source = SAESource(source.folder, source.fmt, source.hook, source.layer, ref.model)
    return sae, source, ref
