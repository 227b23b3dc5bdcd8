"""The run directory: manifest, SAEs (safetensors), per-SAE metrics and per-latent scores (Parquet).

Layout (every file written atomically: temp file in the same folder, then rename):
    manifest.json                 config, package versions, seeds, git commit, host
    config.yaml                   the config as run
    cells/<key>/cell.json         what determines the SAE (the key is a hash of it)
    cells/<key>/sae/              the trained SAE (nullsae.sae.io format: safetensors + cfg.json)
    cells/<key>/<family>-<hash>.json          a metric family's versioned result for that SAE (written last: the "done" marker)
    cells/<key>/<family>-<table>-<hash>.parquet   the tables it keeps (per token, per window, per latent, …)
    cells/<key>/<family>-<document>-<hash>.json   the documents it keeps (example windows, full probing/editing results)
    checkpoints/<key>/            trainer checkpoints of unfinished training (deleted when done)
    metrics.parquet                     one row per SAE of the current plan, every scalar metric
    latents.parquet                     per latent: firing density, token entropy (sampled latents)
    latent_scores.parquet               per interpreted latent and scorer: explanation and AUROC
    figures/*.png, report.html
Every file appears only when complete; a family's result file, written after its tables, marks it done.
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

from nullsae.errors import UserError
from nullsae.io_utils import read_json, write_json, write_parquet

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
    def write_manifest(self, config: dict[str, Any], seeds: dict[str, int | list[int]], extra: dict[str, Any] | None = None) -> Path:
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

    def write_part(self, key: str, part: str, part_hash: str, df: pd.DataFrame) -> Path:
        return write_parquet(self.part_path(key, part, part_hash), df)

    def read_part(self, key: str, part: str, part_hash: str) -> pd.DataFrame:
        return pd.read_parquet(self.part_path(key, part, part_hash))

    def write_json_part(self, key: str, part: str, part_hash: str, obj: Any) -> Path:
        return write_json(self.part_path(key, part, part_hash, "json"), obj)

    def read_json_part(self, key: str, part: str, part_hash: str) -> Any:
        return json.loads(self.part_path(key, part, part_hash, "json").read_text(encoding="utf-8"))

    def has_result(self, key: str, family: str, part_hash: str, version: int) -> bool:
        """Whether the family's result of this SAE is stored, under the family's current result version."""
        path = self.part_path(key, family, part_hash, "json")
        return path.exists() and json.loads(path.read_text(encoding="utf-8")).get("version") == version

    def read_result(self, key: str, family: str, part_hash: str) -> dict[str, Any]:
        """The stored result's fields (check `has_result` first)."""
        return self.read_json_part(key, family, part_hash)["result"]

    def write_output(self, key: str, family: str, part_hash: str, out: Any) -> None:
        """A family's `FamilyOutput` for one SAE: its tables and documents, then its result (the done marker)."""
        for name, df in out.tables.items():
            self.write_part(key, f"{family}-{name}", part_hash, df)
        for name, obj in out.documents.items():
            self.write_json_part(key, f"{family}-{name}", part_hash, obj)
        result = {"family": family, "version": out.result.version, "result": out.result.model_dump()}  # NaN stays NaN
        self.write_json_part(key, family, part_hash, result)

    def write_cell_info(self, key: str, info: dict[str, Any]) -> Path:
        return write_json(self.cell_dir(key) / "cell.json", info)

    def gather(self, name: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """Concatenate per-cell tables into one run-level Parquet file (`metrics`, `latents`, …)."""
        df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame()
        write_parquet(self.root / f"{name}.parquet", df)
        return df


def list_saes(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per cell of `run_dir` that holds a trained SAE, sorted by model, variant, layer, arch, baseline, seed."""
    root = Path(run_dir)
    cells = root / "cells"
    if not (root / "manifest.json").is_file() or not cells.is_dir():
        raise UserError(f"{root} is not a run folder (no manifest.json and cells/); pass the folder `nullsae run` wrote")
    rows = []
    for info_path in sorted(cells.glob("*/cell.json")):
        sae = info_path.parent / "sae"
        if not (sae / "cfg.json").is_file():
            continue  # not trained yet
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{info_path} is unreadable ({exc}); delete that cell folder and rerun the run to recompute it") from None
        seed = info.get("seed", (info.get("sae_config") or {}).get("seed"))
        rows.append(
            {
                "model": info.get("model"),
                "variant": info.get("variant"),
                "layer": info.get("layer"),
                "arch": info.get("arch"),
                "baseline": info.get("baseline") or "none",
                "seed": seed,
                "path": str(sae),
            }
        )
    rows.sort(key=lambda r: (str(r["model"]), str(r["variant"]), r["layer"] or 0, str(r["arch"]), r["baseline"], r["seed"] or 0))
    return rows
