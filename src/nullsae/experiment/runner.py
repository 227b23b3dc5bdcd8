"""Compute one task of a plan — every SAE cell of one (model, variant) — resuming.

First `train` (cache the train split at all layers in one pass; per layer and SAE seed one stream
feeds the SAE and its random baselines), then each metric family of `nullsae.families` on the cells
that lack its result, through a `TaskContext` (activations, windows, the variant, the SAEs). A result
is written atomically when complete and skipped when present. The variant is rebuilt whenever a
family asks for it, so the control variant's fresh noise starts from its seed whatever ran before: a
resumed run gives the numbers an uninterrupted one gives. Models, windows and variants are loaded
once per run into a `RunCache` handed to the tasks.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.config import RunConfig
from nullsae.devices import resolve_device
from nullsae.experiment.grid import Cell, ModelShape, VariantTask, digest, wants
from nullsae.experiment.store import RunStore
from nullsae.io_utils import atomic_dir, write_json
from nullsae.sae.config import FREE_NULLS

if TYPE_CHECKING:
    from nullsae.families import FamilyCell

TRAIN_INFO = "train.json"


@dataclass(frozen=True)
class Job:
    """What an executor hands to `run_task` (picklable, so Ray can ship it)."""

    task: VariantTask
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


# ----- what a run loads once ------------------------------------------------------------------


class RunCache:
    """Models, token windows, the current model variant and the probing tasks of one run, loaded once
    and shared by the tasks that run in this process (each Ray worker builds its own)."""

    def __init__(self, models: dict[str, Any] | None = None):
        self.models: dict[str, Any] = dict(models or {})
        self.windows: dict[tuple, Tensor] = {}
        self.variants: dict[tuple, Any] = {}
        self.tasks: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        """The trained model of a config entry ("smollm2", a path, or a hub id with an optional @revision)."""
        from nullsae.models import load_model

        if name not in self.models:
            spec, _, revision = name.partition("@") if not Path(name).exists() else (name, "", "")
            self.models[name] = load_model(spec, revision=revision or None)
        return self.models[name]

    def model_shape(self, name: str) -> ModelShape:
        loaded = self.model(name)
        return ModelShape(n_layers=loaded.n_layers, d_model=loaded.d_model)

    def variant(self, cfg: RunConfig, model: str, variant: str) -> tuple[Any, Any]:
        """The variant (and its manifest) on the run's device. Deterministic variants are built once;
        the control variant is rebuilt on every call so that its fresh noise restarts from its seed."""
        from nullsae.models import make_variant

        v = cfg.variant
        key = (model, variant, v.seed, v.keep_norms, str(device_of(cfg)))
        if variant != "control" and key in self.variants:
            return self.variants[key]
        out, manifest = make_variant(
            self.model(model), variant, seed=v.seed, keep_norms=v.keep_norms, noise=v.control_noise, sigma=v.control_sigma
        )
        out.model.to(device_of(cfg))
        if variant != "control":
            self.variants.clear()  # hold one variant at a time (a model copy each)
            self.variants[key] = (out, manifest)
        return out, manifest

    def split_windows(self, cfg: RunConfig, model: str, split: str) -> Tensor:
        """(n_windows, context) token ids of one disjoint split of the run's text source."""
        from nullsae.data import token_windows

        t = cfg.tokens
        n_windows = -(-split_tokens(cfg, split) // t.context)
        key = (model, split, t.source, t.context, n_windows, t.seed)
        if key not in self.windows:
            loaded = self.model(model)
            if loaded.tokenizer is None:
                from nullsae.errors import UserError

                raise UserError(f"model {model} has no tokenizer; give a model folder that holds one")
            self.windows[key] = token_windows(
                loaded.tokenizer, loaded.bos_id, t.context, n_windows, source=t.source, split=split, seed=t.seed
            )
        return self.windows[key]

    def probing_tasks(self, cfg: RunConfig) -> Any:
        """The run's labelled probing tasks (a `TaskSet`)."""
        from nullsae.tasks import TaskConfig, load_tasks

        p = cfg.probing
        key = digest([p.tasks, p.n_train, p.n_test, p.seed])
        if key not in self.tasks:
            self.tasks[key] = load_tasks(p.tasks, TaskConfig(n_train=p.n_train, n_test=p.n_test, seed=p.seed))
        return self.tasks[key]


def device_of(cfg: RunConfig) -> torch.device:
    return resolve_device(cfg.device)


def split_tokens(cfg: RunConfig, split: str) -> int:
    return {"train": cfg.tokens.train, "eval": cfg.tokens.eval, "interp": cfg.tokens.interp}[split]


def _cache_dir(cfg: RunConfig, store: RunStore, task: VariantTask, split: str, cache: RunCache) -> Path:
    """The run's activation cache folder of one (model, variant, split)."""
    from nullsae.activations import DataSlice, cache_dir
    from nullsae.models import VariantManifest

    v = cfg.variant
    slug = VariantManifest(
        variant=task.variant, model=task.model, seed=v.seed, keep_norms=v.keep_norms, noise=v.control_noise, sigma=v.control_sigma
    ).slug
    n_windows = -(-split_tokens(cfg, split) // cfg.tokens.context)
    data = DataSlice(source=cfg.tokens.source, split=split, seed=cfg.tokens.seed, window=cfg.tokens.context, n_windows=n_windows)
    return cache_dir(cache.model(task.model).name, slug, data, root=store.root)  # under <run>/activations/


def activations(cfg: RunConfig, store: RunStore, task: VariantTask, split: str, layers: list[int], progress: bool, cache: RunCache) -> Path:
    """Fill (or reuse) the run's activation cache of one split at `layers`; returns its folder."""
    from nullsae.activations import fill_cache

    directory = _cache_dir(cfg, store, task, split, cache)
    if all((directory / f"layer_{layer}" / "meta.json").is_file() for layer in layers):
        return directory
    windows = cache.split_windows(cfg, task.model, split)
    variant, manifest = cache.variant(cfg, task.model, task.variant)
    manifest.write(directory / "manifest.json")
    _seed(task, split)
    fill_cache(variant, windows, layers, directory, batch_size=cfg.tokens.model_batch, progress=progress)
    return directory


def _seed(task: VariantTask, stage: str, extra: str = "") -> None:
    """Seed the global RNGs from what the stage is, so library code drawing from them is reproducible."""
    torch.manual_seed(int(digest([task.model, task.variant, stage, extra])[:8], 16))


# Sparse codes of the interpretation split kept for the families that read them (latents, auto-interp),
# up to this many nonzero activations in all (~28 bytes each); beyond it the oldest are encoded again.
CODES_BUDGET = 20_000_000


class TaskContext:
    """What the metric families get for the cells of one task (`nullsae.families.FamilyContext`)."""

    def __init__(self, job: Job, store: RunStore, cache: RunCache):
        self.job, self.store, self.cache = job, store, cache
        self.config, self.progress, self.label = job.config, job.progress, job.task.label
        self._codes: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return device_of(self.config)

    @property
    def tokenizer(self) -> Any:
        return self.cache.model(self.job.task.model).tokenizer

    def split_activations(self, split: str, layers: list[int]) -> Path:
        return activations(self.config, self.store, self.job.task, split, layers, self.progress, self.cache)

    def windows(self, split: str) -> Tensor:
        return self.cache.split_windows(self.config, self.job.task.model, split)

    def variant(self) -> Any:
        return self.cache.variant(self.config, self.job.task.model, self.job.task.variant)[0]

    def load_sae(self, cell: FamilyCell) -> Any:
        from nullsae.sae.io import load_sae

        return load_sae(self.store.sae_dir(cell.key)).to(self.device).eval()

    def seed(self, stage: str, extra: str = "") -> None:
        _seed(self.job.task, stage, extra)

    def work_dir(self, cell: FamilyCell, name: str) -> Path:
        return self.store.cell_dir(cell.key) / f"{name}-{cell.part_keys[name]}"

    def llm_cache(self) -> Path:
        return self.store.root / "llm-cache"

    def probing_tasks(self) -> Any:
        return self.cache.probing_tasks(self.config)

    def sparse_codes(self, cell: FamilyCell) -> Any:
        """The cell's SAE's sparse codes of the interpretation split (encoded once for the families that read them)."""
        from nullsae.activations import CachedActivations
        from nullsae.families.interp import SparseCodes

        if cell.key not in self._codes:
            cfg = self.config
            directory = self.split_activations("interp", [cell.layer])
            codes = SparseCodes(
                self.load_sae(cell), CachedActivations(directory, cell.layer), cfg.tokens.interp_window, cfg.tokens.skip_bos, self.device
            )
            while self._codes and sum(c.size for c in self._codes.values()) + codes.size > CODES_BUDGET:
                self._codes.pop(next(iter(self._codes)))
            self._codes[cell.key] = codes
        return self._codes[cell.key]


# ----- the stages ----------------------------------------------------------------------------


def _train(job: Job, store: RunStore, cells: list[Cell], cache: RunCache) -> int:
    """Train the cells' SAEs (an SAE and its random baselines on one stream per layer and seed), then
    build their free nulls from the trained SAEs."""
    from nullsae.activations import CachedActivations, CachedStream, LiveStream
    from nullsae.sae import SAE
    from nullsae.sae.io import save_sae
    from nullsae.sae.train import train_saes

    cfg, task = job.config, job.task
    free = [c for c in cells if c.baseline in FREE_NULLS]
    cells = [c for c in cells if c.baseline not in FREE_NULLS]
    layers = sorted({c.layer for c in cells} | {c.layer for c in free})
    directory = None if cfg.train.stream == "live" else activations(cfg, store, task, "train", layers, job.progress, cache)
    trained = 0
    for layer, seed in sorted({(c.layer, c.seed) for c in cells}):
        group = [c for c in cells if c.layer == layer and c.seed == seed]  # an SAE and its baselines: one stream, one seed
        if directory is None:  # a live stream
            variant, _ = cache.variant(cfg, task.model, task.variant)
            stream = LiveStream(
                variant,
                cache.split_windows(cfg, task.model, "train"),
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
        saes = {c.key: SAE(c.sae_config).to(device_of(cfg)) for c in group}
        ckpt = store.checkpoint_dir(digest(sorted(saes)))
        _seed(task, "train", f"{layer}/seed{seed}")
        results = train_saes(saes, stream, cfg.train, checkpoint_dir=ckpt, progress=job.progress)
        for c in group:

            def fill(tmp: Path, c: Cell = c) -> None:
                save_sae(saes[c.key].cpu(), tmp, trained_on=trained_on(c))
                write_json(tmp / TRAIN_INFO, results[c.key].model_dump(mode="json", exclude={"history"}))

            atomic_dir(store.sae_dir(c.key), fill)
            trained += 1
        shutil.rmtree(ckpt, ignore_errors=True)
    trained += _free_nulls(job, store, free, cache, directory)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)  # the SAEs are saved; the train split is the bulk of the cache
    return trained


def _free_nulls(job: Job, store: RunStore, cells: list[Cell], cache: RunCache, train_dir: Path | None) -> int:
    """Build each free null (docs/spec.md#free-nulls) from the trained SAE of its layer, architecture and
    seed, as `nullsae audit` does: PCA and the identity's centre fitted on the train split (the evaluation
    split when training streamed live), the L0 matched on the evaluation split. Saved like a trained SAE, 0 steps."""
    from nullsae.activations import CachedActivations
    from nullsae.families.reconstruction import kept_rows
    from nullsae.sae.free_nulls import free_nulls
    from nullsae.sae.io import load_sae

    cfg, task = job.config, job.task
    done = 0
    for (layer, arch, seed), group in _groups(cells, lambda c: (c.layer, c.arch, c.seed)):
        ref = next(c for c in task.cells if (c.layer, c.arch, c.seed, c.baseline) == (layer, arch, seed, "none"))
        sae = load_sae(store.sae_dir(ref.key)).to(device_of(cfg)).eval()
        x_eval = _rows(CachedActivations(activations(cfg, store, task, "eval", [layer], job.progress, cache), layer), cfg, kept_rows)
        x_fit = x_eval if train_dir is None else _rows(CachedActivations(train_dir, layer), cfg, kept_rows, FREE_NULL_FIT_TOKENS)
        _seed(task, "free-nulls", f"{layer}/{arch}/seed{seed}")
        nulls = free_nulls(sae, x_eval.to(device_of(cfg)), x_fit.to(device_of(cfg)), seed=seed)
        for c in group:
            save_untrained_sae(store, c.key, nulls[c.baseline], {"name": c.baseline, "built_from": ref.key}, trained_on(c))
            done += 1
    return done


def trained_on(c: Cell) -> dict[str, Any]:
    """What a cell's SAE reads, as its cfg.json records it: model, variant, layer and hook."""
    return {"model": c.model, "variant": c.variant, "layer": c.layer, "hook": f"blocks.{c.layer}.hook_resid_post"}


def save_untrained_sae(store: RunStore, key: str, sae: Any, info: dict[str, Any], where: dict[str, Any] | None = None) -> None:
    """Save an SAE this run did not train (a free null, the SAE `nullsae audit` examines) as cell `key`'s SAE:
    its train.json records 0 steps and no training statistics (NaN), beside `info`; `where` is what it reads."""
    from nullsae.sae.io import save_sae

    nan = {k: float("nan") for k in ("fvu", "l0", "dead_fraction", "decoder_drift")}

    def fill(tmp: Path) -> None:
        save_sae(sae.cpu(), tmp, trained_on=where)
        write_json(tmp / TRAIN_INFO, {"steps": 0, "tokens": 0, "skipped_batches": 0, **nan, **info})

    atomic_dir(store.sae_dir(key), fill)


# Training tokens PCA is fitted on (as `nullsae audit`).
FREE_NULL_FIT_TOKENS = 65_536


def _rows(cache: Any, cfg: RunConfig, kept: Any, limit: int | None = None) -> Tensor:
    rows = kept(cache, cfg.tokens.skip_bos)
    return cache.rows(rows if limit is None else rows[:limit]).to(torch.float32)


def _groups(cells: list[Cell], key: Any) -> list[tuple[Any, list[Cell]]]:
    out: dict[Any, list[Cell]] = {}
    for c in cells:
        out.setdefault(key(c), []).append(c)
    return sorted(out.items())


def run_task(job: Job, cache: RunCache | None = None) -> TaskOutcome:
    """Train the task's missing SAEs, then let each metric family compute the results it is missing;
    finished results are skipped. `cache`: the run's loaded models (a new one when not given)."""
    from nullsae.families import FAMILIES

    t0 = time.time()
    cfg, task = job.config, job.task
    cache = cache if cache is not None else RunCache()
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
        outcome.trained = _train(job, store, need_train, cache)
        outcome.stage_seconds["train"] = round(time.time() - t, 1)
    wanted = {f: [c for c in task.cells if wants(cfg, f, c)] for f in FAMILIES}
    todo = {f: [c for c in wanted[f] if not store.has_result(c.key, f, c.part_keys[f], FAMILIES[f].result.version)] for f in FAMILIES}
    outcome.skipped = sum(len(wanted[f]) - len(todo[f]) for f in FAMILIES)
    ctx = TaskContext(job, store, cache)
    for name, family in FAMILIES.items():
        if not todo[name]:
            continue
        t = time.time()
        for c, out in family.compute(ctx, todo[name]):
            store.write_output(c.key, name, c.part_keys[name], out)
            outcome.computed += 1
        outcome.stage_seconds[name] = round(time.time() - t, 1)
    if all(store.has_result(c.key, f, c.part_keys[f], FAMILIES[f].result.version) for f in FAMILIES for c in wanted[f]):
        for split in ("eval", "interp"):  # every result is saved: free the disk the caches take
            shutil.rmtree(_cache_dir(cfg, store, task, split, cache), ignore_errors=True)
    outcome.seconds = time.time() - t0
    return outcome
