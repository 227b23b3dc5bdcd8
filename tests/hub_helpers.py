"""Lay SAE folders out in a local Hugging Face cache exactly as the hub client stores downloads, so
tests resolve `hf:` names and SAELens releases offline."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hf_cache(cache: Path, repo_id: str, files_from: Path, subfolder: str | None = None, revision: str = "main") -> Path:
    """Copy the files of folder `files_from` to repo `repo_id` (under `subfolder`) in the cache at `cache`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    target = snapshot / subfolder if subfolder else snapshot
    target.mkdir(parents=True, exist_ok=True)
    for f in files_from.iterdir():
        shutil.copy(f, target / f.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    return target


def offline_hub(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub (already imported or not) at `cache`, offline."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
