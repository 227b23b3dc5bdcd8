"""Compute one task of a plan — every SAE cell of one (model, variant) — stage by stage, resuming.

Stages: `train` (cache the train split at all layers in one pass; per layer and SAE seed one stream
feeds the SAE and its random baselines), `reconstruction` (eval split; per-token terms kept for the
bootstrap), `downstream` (CE/KL with the residual patched; per-window sums kept), `latents` (firing
density, token entropy, example windows), `autointerp` (explain and score), `probing` (sparse probes
on labelled texts; per-text correctness kept) and `editing` (RAVEL interchange on the facts the
variant's model answers right; per-attribute scores kept). A result part is written
atomically when complete and skipped when present. The variant is rebuilt before every stage that
runs it, so the control variant's fresh noise starts from its seed whatever ran before: a resumed
run gives the numbers an uninterrupted one gives.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.config import RunConfig
from nullsae.devices import resolve_device
from nullsae.experiment.grid import PARTS, Cell, ModelShape, Task, digest, wants
from nullsae.experiment.store import RunStore, atomic_dir, write_json
from nullsae.progress import progress_bar

TRAIN_INFO = "train.json"


@dataclass(frozen=True)
class Job:
    """What an executor hands to `run_task` (picklable, so Ray can ship it)."""

    task: Task
    config: RunConfig
    run_dir: str
    progress: bool


class TaskOutcome(BaseModel):
    task: str
    trained: int = 0
    computed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = {}


# ----- models, data and activations (cached per process) ----------------------------------------

_LOADED: dict[str, Any] = {}
_WINDOWS: dict[tuple, Tensor] = {}


def trained_model(name: str):
    """The trained model of a config entry ("smollm2", a path, or a hub id with an optional @revision)."""
    from nullsae.models import load_model

    if name not in _LOADED:
        spec, _, revision = name.partition("@") if not Path(name).exists() else (name, "", "")
        _LOADED[name] = load_model(spec, revision=revision or None)
    return _LOADED[name]


def model_shape(name: str) -> ModelShape:
    loaded = trained_model(name)
    return ModelShape(n_layers=loaded.n_layers, d_model=loaded.d_model)


def device_of(cfg: RunConfig) -> torch.device:
    return resolve_device(cfg.device)


_VARIANTS: dict[tuple, Any] = {}


def build_variant(cfg: RunConfig, model: str, variant: str):
    """The variant (and its manifest) on the run's device. Deterministic variants are built once per
    process; the control variant is rebuilt on every call so that its fresh noise restarts from its seed."""
    from nullsae.models import make_variant

    v = cfg.variant
    key = (model, variant, v.seed, v.keep_norms, str(device_of(cfg)))
    if variant != "control" and key in _VARIANTS:
        return _VARIANTS[key]
    loaded = trained_model(model)
    out, manifest = make_variant(loaded, variant, seed=v.seed, keep_norms=v.keep_norms, noise=v.control_noise, sigma=v.control_sigma)
    out.model.to(device_of(cfg))
    if variant != "control":
        _VARIANTS.clear()  # hold one variant at a time (a model copy each)
        _VARIANTS[key] = (out, manifest)
    return out, manifest


def split_tokens(cfg: RunConfig, split: str) -> int:
    return {"train": cfg.tokens.train, "eval": cfg.tokens.eval, "interp": cfg.tokens.interp}[split]


def split_windows(cfg: RunConfig, model: str, split: str) -> Tensor:
    """(n_windows, context) token ids of one disjoint split of the run's text source."""
    from nullsae.data import token_windows

    t = cfg.tokens
    n_windows = -(-split_tokens(cfg, split) // t.context)
    key = (model, split, t.source, t.context, n_windows, t.seed)
    if key not in _WINDOWS:
        loaded = trained_model(model)
        if loaded.tokenizer is None:
            from nullsae.errors import UserError

            raise UserError(f"model {model} has no tokenizer; give a model folder that holds one")
        _WINDOWS[key] = token_windows(loaded.tokenizer, loaded.bos_id, t.context, n_windows, source=t.source, split=split, seed=t.seed)
    return _WINDOWS[key]


def _cache_dir(cfg: RunConfig, store: RunStore, task: Task, split: str) -> Path:
    """The run's activation cache folder of one (model, variant, split)."""
    from nullsae.activations import DataSlice, cache_dir
    from nullsae.models import VariantManifest

    v = cfg.variant
    slug = VariantManifest(
        variant=task.variant, model=task.model, seed=v.seed, keep_norms=v.keep_norms, noise=v.control_noise, sigma=v.control_sigma
    ).slug
    n_windows = -(-split_tokens(cfg, split) // cfg.tokens.context)
    data = DataSlice(source=cfg.tokens.source, split=split, seed=cfg.tokens.seed, window=cfg.tokens.context, n_windows=n_windows)
    return cache_dir(trained_model(task.model).name, slug, data, root=store.root)  # under <run>/activations/


def activations(cfg: RunConfig, store: RunStore, task: Task, split: str, layers: list[int], progress: bool) -> Path:
    """Fill (or reuse) the run's activation cache of one split at `layers`; returns its folder."""
    from nullsae.activations import fill_cache

    directory = _cache_dir(cfg, store, task, split)
    if all((directory / f"layer_{layer}" / "meta.json").is_file() for layer in layers):
        return directory
    windows = split_windows(cfg, task.model, split)
    variant, manifest = build_variant(cfg, task.model, task.variant)
    manifest.write(directory / "manifest.json")
    _seed(task, split)
    fill_cache(variant, windows, layers, directory, batch_size=cfg.tokens.model_batch, progress=progress)
    return directory


def _seed(task: Task, stage: str, extra: str = "") -> None:
    """Seed the global RNGs from what the stage is, so library code drawing from them is reproducible."""
    torch.manual_seed(int(digest([task.model, task.variant, stage, extra])[:8], 16))


def _kept_rows(cache: Any, skip_bos: bool) -> Tensor:
    flat = cache.tokens.reshape(-1)
    if skip_bos and cache.bos_id is not None:
        return torch.nonzero(flat != cache.bos_id).squeeze(1)
    return torch.arange(flat.numel())


# ----- the stages ----------------------------------------------------------------------------


def _train(job: Job, store: RunStore, cells: list[Cell]) -> int:
    from nullsae.activations import CachedActivations, CachedStream, LiveStream
    from nullsae.sae import SAE
    from nullsae.sae.io import save_sae
    from nullsae.sae.train import TrainConfig, train_saes

    cfg, task = job.config, job.task
    layers = sorted({c.layer for c in cells})
    live = cfg.train.stream == "live"
    directory = None if live else activations(cfg, store, task, "train", layers, job.progress)
    trained = 0
    for layer, seed in sorted({(c.layer, c.seed) for c in cells}):
        group = [c for c in cells if c.layer == layer and c.seed == seed]  # an SAE and its baselines: one stream, one seed
        if live:
            variant, _ = build_variant(cfg, task.model, task.variant)
            stream = LiveStream(
                variant,
                split_windows(cfg, task.model, "train"),
                layer,
                batch_size=cfg.train.batch_size,
                seed=seed,
                buffer_tokens=cfg.train.buffer_tokens,
                epochs=1,
                exclude_bos=cfg.tokens.skip_bos,
                model_batch=cfg.tokens.model_batch,
            )
        else:
            stream = CachedStream(
                CachedActivations(directory, layer),
                batch_size=cfg.train.batch_size,
                seed=seed,
                epochs=1,
                exclude_bos=cfg.tokens.skip_bos,
                device=device_of(cfg),
            )
        tc = TrainConfig(
            steps=stream.steps_per_epoch,
            lr=cfg.train.lr,
            warmup_steps=min(cfg.train.warmup_steps, stream.steps_per_epoch),
            decay_fraction=cfg.train.decay_fraction,
            checkpoint_every=cfg.train.checkpoint_every,
        )
        saes = {c.key: SAE(c.sae_config).to(device_of(cfg)) for c in group}
        ckpt = store.checkpoint_dir(digest(sorted(saes)))
        _seed(task, "train", f"{layer}/seed{seed}")
        results = train_saes(saes, stream, tc, checkpoint_dir=ckpt, progress=job.progress)
        for c in group:

            def fill(tmp: Path, c: Cell = c) -> None:
                save_sae(saes[c.key].cpu(), tmp)
                write_json(tmp / TRAIN_INFO, results[c.key].model_dump(mode="json", exclude={"history"}))

            atomic_dir(store.sae_dir(c.key), fill)
            trained += 1
        shutil.rmtree(ckpt, ignore_errors=True)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)  # the SAEs are saved; the train split is the bulk of the cache
    return trained


def _load(store: RunStore, cell: Cell, cfg: RunConfig):
    from nullsae.sae.io import load_sae

    sae = load_sae(store.sae_dir(cell.key))
    return sae.to(device_of(cfg)).eval()


def _reconstruction(job: Job, store: RunStore, cells: list[Cell]) -> int:
    from nullsae.activations import CachedActivations
    from nullsae.metrics.reconstruction import ReconstructionAccumulator, standardized_sq_terms

    cfg = job.config
    directory = activations(cfg, store, job.task, "eval", sorted({c.layer for c in cells}), job.progress)
    dev = device_of(cfg)
    for c in progress_bar(cells, desc=f"reconstruction {job.task.label}", disable=not job.progress, leave=False):
        cache = CachedActivations(directory, c.layer)
        rows = _kept_rows(cache, cfg.tokens.skip_bos)
        x = cache.rows(rows).to(dev)
        mean, std = x.double().mean(0), x.double().std(0)
        sae = _load(store, c, cfg)
        acc = ReconstructionAccumulator(c.sae_config.n_latents, mean=mean, std=std)
        per: dict[str, list[Tensor]] = {"sq_err": [], "sq_dev": [], "sq_err_std": [], "sq_dev_std": [], "cos": [], "l1": []}
        with torch.no_grad():
            for xb in x.split(1024):
                z = sae.encode(xb)
                recon = sae.decode(z)
                acc.update(xb, recon, z)
                xd, rd = xb.double(), recon.double()
                per["sq_err"].append((xd - rd).pow(2).sum(1).cpu())
                per["sq_dev"].append((xd - mean).pow(2).sum(1).cpu())
                err_std, dev_std = standardized_sq_terms(xb, recon, mean, std)
                per["sq_err_std"].append(err_std.cpu())
                per["sq_dev_std"].append(dev_std.cpu())
                per["cos"].append(torch.nn.functional.cosine_similarity(xd, rd, dim=1).cpu())
                per["l1"].append(z.double().abs().sum(1).cpu())
        tokens = pd.DataFrame({"token": rows.numpy(), **{k: torch.cat(v).numpy() for k, v in per.items()}})
        pk = c.part_keys["reconstruction"]
        store.write_part(c.key, "reconstruction-tokens", pk, tokens)
        store.write_part(c.key, "reconstruction", pk, pd.DataFrame([acc.result().model_dump()]))
    return len(cells)


def _downstream(job: Job, store: RunStore, cells: list[Cell]) -> int:
    from nullsae.metrics.downstream import downstream_metrics, mean_activation

    cfg, task = job.config, job.task
    windows = split_windows(cfg, task.model, "eval")
    for c in progress_bar(cells, desc=f"downstream {task.label}", disable=not job.progress, leave=False):
        sae = _load(store, c, cfg)
        variant, _ = build_variant(cfg, task.model, task.variant)  # control: fresh, its noise restarts from its seed
        _seed(task, "downstream", c.key)

        def reconstruct(x: Tensor) -> Tensor:
            return sae.decode(sae.encode(x))

        mean = mean_activation(variant.model, windows, c.layer, batch_size=cfg.tokens.model_batch)
        per_window = downstream_metrics(
            variant.model,
            windows,
            c.layer,
            reconstruct,
            mean=mean,
            skip_bos=cfg.tokens.skip_bos,
            batch_size=cfg.tokens.model_batch,
            progress=job.progress,
        )
        units = pd.DataFrame({"unit": range(windows.shape[0]), **{k: v.numpy() for k, v in per_window.sums.items()}})
        r = per_window.summary()
        row = {
            **r.model_dump(include={"ce_clean", "ce_sae", "ce_zero", "ce_mean", "kl_sae", "kl_zero", "kl_mean", "delta_ce"}),
            "ce_score": r.ce_loss_score,
            "kl_score": r.kl_score,
            "ce_ill_conditioned": r.ill_conditioned,
            "downstream_tokens": r.n_tokens,
        }
        pk = c.part_keys["downstream"]
        store.write_part(c.key, "downstream-units", pk, units)
        store.write_part(c.key, "downstream", pk, pd.DataFrame([row]))
        del variant
    return len(cells)


class _SparseCodes:
    """An SAE's nonzero activations over the interpretation split, computed once and looked up by window.

    The split's (N, context) windows are viewed as (N·context/w, w) example windows of docs/spec.md#autointerp.
    """

    def __init__(self, sae: Any, cache: Any, window: int, skip_bos: bool, device: torch.device):
        from nullsae.autointerp.examples import SparseActs

        flat = cache.tokens.reshape(-1)
        self.tokens = flat.view(-1, window)
        win, pos, lat, val = [], [], [], []
        with torch.no_grad():
            for start in range(0, flat.numel(), 4096):
                idx = torch.arange(start, min(start + 4096, flat.numel()))
                z = sae.encode(cache.rows(idx).to(device)).cpu()
                if skip_bos and cache.bos_id is not None:
                    z[flat[idx] == cache.bos_id] = 0
                r, j = z.nonzero(as_tuple=True)
                g = idx[r]
                win.append(g // window)
                pos.append(g % window)
                lat.append(j)
                val.append(z[r, j].float())
        self.acts = SparseActs(torch.cat(win), torch.cat(pos), torch.cat(lat), torch.cat(val))
        self.starts = torch.searchsorted(self.acts.window, torch.arange(self.tokens.shape[0] + 1))

    def encode(self, window_ids: Tensor) -> Any:
        from nullsae.autointerp.examples import SparseActs

        pieces = [torch.arange(int(self.starts[w]), int(self.starts[w + 1])) for w in window_ids.tolist()]
        sel = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
        a = self.acts
        return SparseActs(a.window[sel], a.pos[sel], a.latent[sel], a.value[sel])


def _example_config(cfg: RunConfig):
    return cfg.autointerp.examples.model_copy(update={"seed": cfg.autointerp.seed})


def _latents(job: Job, store: RunStore, c: Cell, source: Any, tokenizer: Any) -> None:
    """Firing density of every latent; token entropy and example windows of the sampled latents (docs/spec.md#latent-statistics)."""
    from nullsae.autointerp.examples import collect_examples, count_firing, select_latents
    from nullsae.metrics.latents import is_single_token, mean_entropy, token_entropy
    from nullsae.text_spans import token_pieces

    cfg = job.config
    ecfg = _example_config(cfg)
    counts = count_firing(source)
    selection = select_latents(counts, ecfg)  # the same latents auto-interp samples (same config and seed)
    examples = collect_examples(source, selection.latents, ecfg)
    stats = {
        lat: token_entropy(torch.stack([e.tokens for e in ex.explain]), torch.stack([e.acts for e in ex.explain]))
        for lat, ex in examples.items()
        if ex.explain
    }
    df = pd.DataFrame(
        {
            "latent": np.arange(c.sae_config.n_latents),
            "density": (counts.tokens.double() / counts.n_tokens).numpy(),
            "fire_windows": counts.windows.numpy(),
        }
    )
    df["entropy"] = df.latent.map({k: s.normalized for k, s in stats.items()}).astype(float)
    df["entropy_raw"] = df.latent.map({k: s.entropy for k, s in stats.items()}).astype(float)
    df["single_token"] = df.latent.map({k: float(is_single_token(s)) for k, s in stats.items()}).astype(float)
    sampled = df.dropna(subset=["entropy"])
    row = {
        "entropy": mean_entropy(sampled.entropy.to_numpy()),
        "entropy_raw": float(sampled.entropy_raw.mean()) if len(sampled) else math.nan,
        "single_token_fraction": float(sampled.single_token.mean()) if len(sampled) else math.nan,
        "n_latents_sampled": len(selection.latents),
        "n_latents_eligible": selection.n_eligible,
        "n_latents_removed": selection.n_removed,
        "n_dead_interp": selection.n_dead,
    }
    shown = []
    for lat in selection.latents[: cfg.report.example_latents]:
        top = sorted(examples[lat].explain, key=lambda e: -e.max_act)[:4]
        shown.append(
            {
                "latent": lat,
                "entropy": stats[lat].normalized if lat in stats else None,
                "windows": [
                    {"tokens": token_pieces(tokenizer, e.tokens.tolist()), "acts": [round(float(a), 4) for a in e.acts.tolist()]}
                    for e in top
                ],
            }
        )
    pk = c.part_keys["latents"]
    store.write_part(c.key, "latents-per-latent", pk, df)
    store.write_json_part(c.key, "latents-examples", pk, shown)
    store.write_part(c.key, "latents", pk, pd.DataFrame([row]))


def _autointerp(job: Job, store: RunStore, c: Cell, source: Any, tokenizer: Any) -> None:
    """Explain and score the sampled latents (docs/spec.md#autointerp); pooled AUROC per scorer and every scored example."""
    from nullsae.autointerp.run import run_autointerp

    acfg = job.config.autointerp
    if acfg.llm_cache is None:
        acfg = acfg.model_copy(update={"llm_cache": str(store.root / "llm-cache")})
    pk = c.part_keys["autointerp"]
    _seed(job.task, "autointerp", c.key)
    res = run_autointerp(source, tokenizer, acfg, store.cell_dir(c.key) / f"autointerp-{pk}", c.label, progress=job.progress)
    row: dict[str, Any] = {"n_latents_interpreted": len(res.selection.latents), "n_explain_failed": res.n_explain_failed}
    for s in res.summaries:
        row[f"auroc_{s.scorer}"] = s.auroc_pooled.estimate
        row[f"auroc_{s.scorer}_low"] = s.auroc_pooled.low
        row[f"auroc_{s.scorer}_high"] = s.auroc_pooled.high
        row[f"auroc_{s.scorer}_mean"] = s.auroc_mean.estimate
        if s.balanced_accuracy is not None:
            row[f"bacc_{s.scorer}"] = s.balanced_accuracy.estimate
    per = pd.read_parquet(res.latents_path)
    if not res.selection.latents:  # no latent fires in min_examples windows: a warning and empty parts, not a crash
        warnings.warn(
            f"{c.label}: no latent fires in at least {acfg.examples.min_examples} interpretation windows, so none is interpreted; "
            "lower --autointerp.examples.min-examples or raise --tokens.interp"
        )
        per = pd.DataFrame(
            {
                "latent": pd.Series(dtype=int),
                "scorer": pd.Series(dtype=str),
                "auroc": pd.Series(dtype=float),
                "explanation": pd.Series(dtype=str),
                "scores": pd.Series(dtype=object),
                "labels": pd.Series(dtype=object),
            }
        )
    per = per[per.latent.isin(res.selection.latents)]
    scores = (
        per[["latent", "scorer", "scores", "labels"]].explode(["scores", "labels"]).rename(columns={"scores": "score", "labels": "label"})
    )
    scores = scores.dropna(subset=["score"]).astype({"score": float, "label": int})
    store.write_part(c.key, "autointerp-scores", pk, scores.reset_index(drop=True))
    store.write_part(c.key, "autointerp-latents", pk, per[["latent", "scorer", "auroc", "explanation"]].reset_index(drop=True))
    store.write_part(c.key, "autointerp", pk, pd.DataFrame([row]))


def _interp(job: Job, store: RunStore, latents: list[Cell], autointerp: list[Cell]) -> int:
    """The interpretation-split parts: one activation pass per task, one sparse encode per SAE for both."""
    from nullsae.activations import CachedActivations
    from nullsae.autointerp.examples import ActivationSource

    cfg, task = job.config, job.task
    want_lat, want_ai = {c.key for c in latents}, {c.key for c in autointerp}
    cells = [c for c in job.task.cells if c.key in want_lat | want_ai]
    directory = activations(cfg, store, task, "interp", sorted({c.layer for c in cells}), job.progress)
    tokenizer = trained_model(task.model).tokenizer
    for c in progress_bar(cells, desc=f"latents and auto-interp {task.label}", disable=not job.progress, leave=False):
        sae = _load(store, c, cfg)
        codes = _SparseCodes(sae, CachedActivations(directory, c.layer), cfg.tokens.interp_window, cfg.tokens.skip_bos, device_of(cfg))
        source = ActivationSource(codes.tokens, codes.encode, c.sae_config.n_latents, batch_windows=256, progress=job.progress)
        if c.key in want_lat:
            _latents(job, store, c, source, tokenizer)
        if c.key in want_ai:
            _autointerp(job, store, c, source, tokenizer)
    return len(latents) + len(autointerp)


_TASKS: dict[str, Any] = {}


def probing_tasks(cfg: RunConfig) -> Any:
    """The run's labelled probing tasks (a `TaskSet`), built once per process."""
    from nullsae.tasks import TaskConfig, load_tasks

    p = cfg.probing
    key = digest([p.tasks, p.n_train, p.n_test, p.seed])
    if key not in _TASKS:
        _TASKS[key] = load_tasks(p.tasks, TaskConfig(n_train=p.n_train, n_test=p.n_test, seed=p.seed))
    return _TASKS[key]


def _probing(job: Job, store: RunStore, cells: list[Cell]) -> int:
    """Sparse probing (probing.py) of every SAE of a layer on one pass of the variant over the task texts."""
    from nullsae.probing import ProbingConfig, run_probing_many, unit_table

    cfg, task = job.config, job.task
    tasks = probing_tasks(cfg)
    pcfg = ProbingConfig(**cfg.probing.model_dump(include=set(ProbingConfig.model_fields)))
    for layer in sorted({c.layer for c in cells}):
        group = [c for c in cells if c.layer == layer]
        variant, _ = build_variant(cfg, task.model, task.variant)  # control: fresh, its noise restarts from its seed
        _seed(task, "probing", str(layer))
        with _bars(job.progress):
            results = run_probing_many({c.key: _load(store, c, cfg) for c in group}, variant, layer, tasks.tasks, pcfg)
        for c in group:
            r, pk = results[c.key], c.part_keys["probing"]
            row = {
                **{f"probe_acc_k{k}": v for k, v in r.mean_sae.items()},
                "probe_raw": r.mean_raw,
                **{f"probe_random_k{k}": v for k, v in r.mean_random.items()},
                "probe_tasks": len(r.tasks),
            }
            store.write_json_part(c.key, "probing-result", pk, r.model_dump(mode="json"))
            store.write_part(c.key, "probing-units", pk, unit_table(r))
            store.write_part(c.key, "probing", pk, pd.DataFrame([row]))
    return len(cells)


def _editing(job: Job, store: RunStore, cells: list[Cell]) -> int:
    """RAVEL-style editing (editing.py) on the facts this variant's model answers right; attributes it
    knows too few entities of are skipped with the reason (`editing_skipped`)."""
    from nullsae.editing import prepare_facts, run_editing

    cfg, task = job.config, job.task
    for layer in sorted({c.layer for c in cells}):
        variant, _ = build_variant(cfg, task.model, task.variant)
        _seed(task, "editing", str(layer))
        with _bars(job.progress):
            prep = prepare_facts(variant, layer, cfg.editing)
        for c in [c for c in cells if c.layer == layer]:
            with _bars(job.progress):
                r = run_editing(_load(store, c, cfg), variant, layer, cfg.editing, prepared=prep)
            pk = c.part_keys["editing"]
            units = pd.DataFrame(
                [
                    a.model_dump(include={"attribute", "n_latents", "cause", "isolation", "score", "full_cause", "full_isolation"})
                    for a in r.attributes
                ],
                columns=["attribute", "n_latents", "cause", "isolation", "score", "full_cause", "full_isolation"],
            )
            counts = r.counts
            skipped = "; ".join(f"{k}: {why}" for k, why in r.skipped.items())
            row = {
                "ravel_cause": _nan(r.cause),
                "ravel_isolation": _nan(r.isolation),
                "ravel_score": _nan(r.score),
                "ravel_full_cause": _nan(r.full_cause),
                "editing_attributes": len(r.attributes),
                "editing_facts_correct": counts.n_facts_correct,
                "editing_facts": counts.n_facts,
                "editing_skipped": (
                    f"{counts.n_facts_correct}/{counts.n_facts} facts answered right; skipped {skipped}" if skipped else ""
                ),
            }
            store.write_json_part(c.key, "editing-result", pk, r.model_dump(mode="json"))
            store.write_part(c.key, "editing-units", pk, units)
            store.write_part(c.key, "editing", pk, pd.DataFrame([row]))
    return len(cells)


def _bars(progress: bool) -> contextlib.AbstractContextManager:
    """Without progress, the progress bars the probing and editing libraries draw on stderr are dropped."""
    return contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def run_task(job: Job) -> TaskOutcome:
    """Compute whatever is missing for the cells of one task; finished parts are skipped."""
    t0 = time.time()
    cfg, task = job.config, job.task
    store = RunStore(job.run_dir)
    torch.set_grad_enabled(True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for c in task.cells:
        if not (store.cell_dir(c.key) / "cell.json").exists():
            store.write_cell_info(c.key, c.info())
    outcome = TaskOutcome(task=task.label)
    need_train = [c for c in task.cells if not store.has_sae(c.key)]
    if need_train:
        t = time.time()
        outcome.trained = _train(job, store, need_train)
        outcome.stage_seconds["train"] = round(time.time() - t, 1)
    wanted = {p: [c for c in task.cells if wants(cfg, p, c)] for p in PARTS}
    todo = {p: [c for c in wanted[p] if not store.has_part(c.key, p, c.part_keys[p])] for p in PARTS}
    outcome.skipped = sum(len(wanted[p]) - len(todo[p]) for p in PARTS)
    stages = {
        "reconstruction": (bool(todo["reconstruction"]), lambda: _reconstruction(job, store, todo["reconstruction"])),
        "downstream": (bool(todo["downstream"]), lambda: _downstream(job, store, todo["downstream"])),
        "interp": (bool(todo["latents"] or todo["autointerp"]), lambda: _interp(job, store, todo["latents"], todo["autointerp"])),
        "probing": (bool(todo["probing"]), lambda: _probing(job, store, todo["probing"])),
        "editing": (bool(todo["editing"]), lambda: _editing(job, store, todo["editing"])),
    }
    for stage, (needed, run_stage) in stages.items():
        if needed:
            t = time.time()
            outcome.computed += run_stage()
            outcome.stage_seconds[stage] = round(time.time() - t, 1)
    if all(store.has_part(c.key, p, c.part_keys[p]) for p in PARTS for c in wanted[p]):
        for split in ("eval", "interp"):  # every result is saved: free the disk the caches take
            shutil.rmtree(_cache_dir(cfg, store, task, split), ignore_errors=True)
    outcome.seconds = time.time() - t0
    return outcome
