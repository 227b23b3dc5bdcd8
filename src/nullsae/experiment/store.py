"""The run directory: manifest, SAEs (safetensors), per-SAE metrics and per-latent scores (Parquet).

Layout (every file written atomically: temp file in the same folder, then rename):
    manifest.json                 config, package versions, seeds, git commit, host
    config.yaml                   the config as run
    cells/<key>/cell.json         what determines the SAE (the key is a hash of it)
    cells/<key>/sae/              the trained SAE (nullsae.sae.io format: safetensors + cfg.json)
    cells/<key>/<part>-<hash>.parquet   one result part of that SAE (metrics row, per-latent, per-token)
    cells/<key>/<part>-<hash>.json      small JSON results (example windows)
    checkpoints/<key>/            trainer checkpoints of unfinished training (deleted when done)
    metrics.parquet                     one row per SAE of the current plan, every scalar metric
    latents.parquet                     per latent: firing density, token entropy (sampled latents)
    latent_scores.parquet               per interpreted latent and scorer: explanation and AUROC
    figures/*.png, report.html
A part file exists only when complete, so its presence is the "done" marker used for resuming.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nullsae.io_utils import atomic_dir, atomic_write, read_json, write_bytes, write_json, write_parquet, write_text  # noqa: F401 (the run store's writers)

PACKAGES = (
    "nullsae",
    "torch",
    "transformers",
    "numpy",
    "safetensors",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "sentence-transformers",
    "pydantic",
)


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The commit of the source tree nullsae runs from ("unknown" outside a git checkout)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = res.stdout.strip()
    if res.returncode != 0 or not sha:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
    )
    return sha + ("-dirty" if dirty.stdout.strip() else "")


class RunStore:
    """Reads and writes one run directory; safe to share between processes (one writer per cell)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ----- run level --------------------------------------------------------------------------
    def write_manifest(self, config: dict[str, Any], seeds: dict[str, int], extra: dict[str, Any] | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": config,
            "seeds": seeds,
            "packages": package_versions(),
            "git_commit": git_commit(),
            "host": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
            **(extra or {}),
        }
        return write_json(self.root / "manifest.json", manifest)

    def manifest(self) -> dict[str, Any]:
        return read_json(self.root / "manifest.json", "run manifest", "delete the run folder (or that file) and rerun")

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def report_path(self) -> Path:
        return self.root / "report.html"

    # ----- cell level -------------------------------------------------------------------------
    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def checkpoint_dir(self, key: str) -> Path:
        return self.root / "checkpoints" / key

    def sae_dir(self, key: str) -> Path:
        return self.cell_dir(key) / "sae"

    def has_sae(self, key: str) -> bool:
        return (self.sae_dir(key) / "cfg.json").exists()

    def part_path(self, key: str, part: str, part_hash: str, ext: str = "parquet") -> Path:
        return self.cell_dir(key) / f"{part}-{part_hash}.{ext}"

    def has_part(self, key: str, part: str, part_hash: str, ext: str = "parquet") -> bool:
        return self.part_path(key, part, part_hash, ext).exists()

    def write_part(self, key: str, part: str, part_hash: str, df: pd.DataFrame) -> Path:
        return write_parquet(self.part_path(key, part, part_hash), df)

    def read_part(self, key: str, part: str, part_hash: str) -> pd.DataFrame:
        return pd.read_parquet(self.part_path(key, part, part_hash))

    def write_json_part(self, key: str, part: str, part_hash: str, obj: Any) -> Path:
        return write_json(self.part_path(key, part, part_hash, "json"), obj)

    def read_json_part(self, key: str, part: str, part_hash: str) -> Any:
        return json.loads(self.part_path(key, part, part_hash, "json").read_text(encoding="utf-8"))

    def write_cell_info(self, key: str, info: dict[str, Any]) -> Path:
        return write_json(self.cell_dir(key) / "cell.json", info)

    def gather(self, name: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """Concatenate per-cell tables into one run-level Parquet file (`metrics`, `latents`, …)."""
        df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame()
        write_parquet(self.root / f"{name}.parquet", df)
        return df
