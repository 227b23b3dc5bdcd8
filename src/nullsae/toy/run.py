"""One toy experiment end to end: assemble its datasets, run the batched sweep (or the Lomax example),
write runs.csv, points.csv, the figures and results.json; return the results object."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nullsae.io_utils import atomic_write_text
from nullsae.toy.config import ToyConfig
from nullsae.toy.data import ToyData


def datasets(cfg: ToyConfig) -> tuple[list[ToyData], int]:
    """(datasets, d) of the experiment with their Gaussian controls (and MLP outputs), restricted to cfg.data."""
    from nullsae.toy.data import load_vectors, sharkey, token_embeddings, with_controls

    mlp = any(name.startswith("mlp-") for name in cfg.data)
    seeds = cfg.seed_list()
    out: list[ToyData] = []
    if cfg.experiment == "superposition":
        for s in seeds:
            data = sharkey(n_samples=cfg.samples, seed=s)
            out += with_controls(data.x, s, data.features, mlp=mlp)
    elif cfg.experiment == "glove":
        x = load_vectors(cfg.vectors, max_vectors=cfg.samples)
        for s in seeds:
            out += with_controls(x, s, mlp=mlp)
    else:
        from nullsae.models import load_model

        mats = token_embeddings(load_model(cfg.model), cfg.variants)
        rows = None
        for variant, emb in mats.items():
            if rows is None:
                rows = torch.randperm(emb.shape[0], generator=torch.Generator().manual_seed(0))[: cfg.samples]
            for s in seeds:
                out += [replace(ds, name=f"{variant}/{ds.name}") for ds in with_controls(emb[rows], s, mlp=mlp)]
    keep = [ds for ds in out if ds.name.rsplit("/", 1)[-1] in cfg.data]
    return keep, keep[0].x.shape[1]


def _lomax(cfg: ToyConfig, out: Path) -> dict[str, Any]:
    import pandas as pd

    from nullsae.toy.data import lomax_example
    from nullsae.toy.figures import lomax_figure

    ex = lomax_example(n_samples=cfg.samples, seed=cfg.seed_list()[0])
    table = torch.cat([ex.sparse_inputs, ex.dense_inputs, ex.dense_outputs, ex.sparse_outputs], dim=1).numpy()
    cols = ["z1", "z2", "z3", "x1", "x2", "y1", "y2", "zout1", "zout2", "zout3"]
    atomic_write_text(out / "lomax.csv", pd.DataFrame(table, columns=cols).to_csv(index=False))
    fig = lomax_figure(ex, out / "fig04_lomax.png")
    return {"experiment": "lomax", "points": [], "files": [str(out / "lomax.csv"), str(fig)]}


def _train_seconds(runs: list) -> float | None:
    """Training wall time of the whole sweep, summed over its resumed calls (None if any stack's is unrecorded)."""
    shares = [r.train_seconds for r in runs]
    return None if None in shares else sum(shares)


def _sweep(cfg: ToyConfig, out: Path) -> dict[str, Any]:
    import pandas as pd

    from nullsae.devices import resolve_device
    from nullsae.toy.figures import sweep_figures
    from nullsae.toy.sweep import run_sweep, sparsity_at_ev, summarize

    data, d = datasets(cfg)
    latents = cfg.latents or ([1024] if cfg.experiment == "superposition" else [4 * d, 16 * d])
    sweep = cfg.sweep.model_copy(update={"latents": latents, "device": str(resolve_device(cfg.device))})
    runs = run_sweep(data, sweep, checkpoint_dir=out / "checkpoints")
    points = summarize(runs)
    atomic_write_text(out / "runs.csv", pd.DataFrame([r.model_dump() for r in runs]).to_csv(index=False))
    flat = [{**p.model_dump(exclude={"sem"}), **{f"sem_{k}": v for k, v in p.sem.items()}} for p in points]
    atomic_write_text(out / "points.csv", pd.DataFrame(flat).to_csv(index=False))
    files = [str(f) for f in sweep_figures(cfg.experiment, points, out)]
    return {
        "experiment": cfg.experiment,
        "config": {**sweep.model_dump(), "seeds": cfg.seed_list(), "samples": cfg.samples, "d": d},
        "points": [p.model_dump() for p in points],
        "frontier_at_ev": [row for ev in cfg.frontier_ev for row in sparsity_at_ev(points, ev)],
        "threads": torch.get_num_threads(),
        "train_seconds": _train_seconds(runs),
        "files": [str(out / "runs.csv"), str(out / "points.csv"), *files],
    }


def run_toy(cfg: ToyConfig, out: Path) -> dict[str, Any]:
    """Run the experiment into `out` (held by the caller) and write results.json; the results object."""
    start = time.time()
    result = _lomax(cfg, out) if cfg.experiment == "lomax" else _sweep(cfg, out)
    result["seconds"] = round(time.time() - start, 1)
    atomic_write_text(out / "results.json", json.dumps(result) + "\n")
    return result
