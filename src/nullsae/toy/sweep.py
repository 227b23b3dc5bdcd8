"""The toy SAE and its L1-coefficient sweep (Heap et al. App. C.2; docs/spec.md#toy-models), trained as one batched model.

Every (dataset, seed, coefficient) run is one slice of stacked weights (R, m, d): one forward pass,
one loss (the sum of the runs' independent losses) and one elementwise Adam step train them all.
Runs with the same seed share their initial weights and data order, like separate runs seeded alike.

Toy SAE: z = ReLU(W_enc x̃ + b_enc) on the per-sample standardised input x̃, x̂ = (W_dec z)·σ + μ
(back in input space), decoder rows unit-norm before every step, orthogonal decoder init;
loss = MSE(x̂, x) + c · mean|z| (mean over samples and latents, as in Heap et al.'s code).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import Tensor

from nullsae.errors import UserError
from nullsae.io_utils import atomic_torch_save, atomic_write_text, read_json
from nullsae.metrics import recovery, sparsity
from nullsae.metrics.stacked import explained_variance
from nullsae.progress import progress_bar
from nullsae.sae.train import fused_adam
from nullsae.toy.config import SweepConfig
from nullsae.toy.data import ToyData, split

METRICS = ("ev", "l0", "l1", "l1_sqrt_l2", "hoyer", "mmcs", "mcc")


class ToyMetrics(BaseModel):
    """The metrics every toy SAE reports (ground-truth ones only where features are known)."""

    ev: float
    l0: float
    l1: float
    l1_sqrt_l2: float
    hoyer: float
    mmcs: float | None = None
    mcc: float | None = None


class RunResult(ToyMetrics):
    """Metrics of one trained toy SAE on its held-out set."""

    data: str
    seed: int
    latents: int
    coef: float
    train_seconds: float | None = Field(
        default=None, description="its share of its batched model's training wall time, summed over resumed calls (None if unrecorded)"
    )


class SweepPoint(ToyMetrics):
    """Mean over seeds of one (data, latents, coef) cell; `sem` holds the standard errors (None for one seed)."""

    data: str
    latents: int
    coef: float
    n_seeds: int
    sem: dict[str, float | None]


def _standardize(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample standardisation: (x − μ)/σ with μ, σ over the sample's coordinates."""
    mean = x.mean(-1, keepdim=True)
    std = (x - mean).std(-1, keepdim=True)
    return (x - mean) / (std + 1e-8), mean, std


class StackedToySAE:
    """R toy SAEs as stacked tensors; slice r is an independent SAE."""

    def __init__(self, seeds: list[int], d: int, m: int, device: str | torch.device = "cpu"):
        enc, benc, dec = [], [], []
        bound = 1 / math.sqrt(d)  # nn.Linear default init for the encoder
        cache: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for s in seeds:
            if s not in cache:
                gen = torch.Generator().manual_seed(s)
                w = (torch.rand(m, d, generator=gen) * 2 - 1) * bound
                b = (torch.rand(m, generator=gen) * 2 - 1) * bound
                wd = torch.nn.init.orthogonal_(torch.empty(d, m), generator=gen).T.contiguous()
                cache[s] = (w, b, wd)
            w, b, wd = cache[s]
            enc.append(w)
            benc.append(b)
            dec.append(wd)
        self.W_enc = torch.stack(enc).to(device).requires_grad_(True)
        self.b_enc = torch.stack(benc).to(device).requires_grad_(True)
        self.W_dec = torch.stack(dec).to(device).requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.W_enc, self.b_enc, self.W_dec]

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def forward(self, x: Tensor, runs: slice = slice(None)) -> tuple[Tensor, Tensor]:
        """x (R, B, d) raw inputs of the runs `runs` → (x̂ (R, B, d) in input space, z (R, B, m))."""
        xs, mean, std = _standardize(x)
        z = torch.relu(torch.baddbmm(self.b_enc[runs].unsqueeze(1), xs, self.W_enc[runs].transpose(1, 2)))
        return torch.bmm(z, self.W_dec[runs]) * std + mean, z


def _save_state(
    path: Path, sae: StackedToySAE, opt: torch.optim.Adam, epoch: int, gens: list[torch.Generator], seconds: float | None
) -> None:
    """Weights, Adam moments, data-order generators and training seconds after `epoch` epochs, written atomically."""
    state = {
        "epoch": epoch,
        "params": [p.detach() for p in sae.parameters()],
        "opt": opt.state_dict(),
        "gens": [g.get_state() for g in gens],
        "seconds": seconds,
    }
    atomic_torch_save(state, path)


def _load_state(path: Path, sae: StackedToySAE, opt: torch.optim.Adam, gens: list[torch.Generator]) -> tuple[int, float | None]:
    """(epochs done, training seconds so far: None when the state predates their recording)."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        with torch.no_grad():
            for p, saved in zip(sae.parameters(), state["params"], strict=True):
                p.copy_(saved)
        opt.load_state_dict(state["opt"])
        for g, saved in zip(gens, state["gens"], strict=True):
            g.set_state(saved)
    except Exception as exc:  # noqa: BLE001 - any unreadable state is the same user problem
        raise UserError(
            f"sweep checkpoint {path} is corrupt or does not fit this sweep ({type(exc).__name__}); delete it to retrain that part"
        ) from None
    return int(state["epoch"]), state.get("seconds")


def _train_stack(
    sae: StackedToySAE,
    x_train: Tensor,
    src: Tensor,
    seed_slot: Tensor,
    seeds: list[int],
    coefs: Tensor,
    cfg: SweepConfig,
    desc: str,
    progress: bool,
    state_path: Path | None = None,
    save_seconds: float = 600.0,
    max_epochs: int | None = None,
) -> tuple[int, bool, float | None]:
    """Adam on the stacked weights; run r reads dataset src[r] in the order of its seed.

    With `state_path`, training resumes from the state saved there and saves it at epoch ends, at
    most every `save_seconds`; a resumed stack ends bit-identical to an uninterrupted one. At most
    `max_epochs` epochs run in this call; returns how many did, whether training is complete and the
    stack's training wall seconds over all its calls (None if an earlier call did not record them).
    """
    opt = fused_adam(sae.parameters(), lr=cfg.lr)
    n = x_train.shape[1]
    steps = math.ceil(n / cfg.batch_size)
    gens = [torch.Generator().manual_seed(1_000_003 + s) for s in seeds]
    start, before = _load_state(state_path, sae, opt, gens) if state_path is not None and state_path.exists() else (0, 0.0)
    end = cfg.epochs if max_epochs is None else min(cfg.epochs, start + max_epochs)
    began = saved_at = time.monotonic()

    def seconds() -> float | None:
        return None if before is None else before + time.monotonic() - began

    with progress_bar(
        total=cfg.epochs * steps, initial=start * steps, desc=desc, unit="step", leave=False, mininterval=2, disable=not progress
    ) as bar:
        for epoch in range(start, end):
            perms = torch.stack([torch.randperm(n, generator=g) for g in gens])[seed_slot].to(x_train.device)  # (R, n)
            for i in range(steps):
                idx = perms[:, i * cfg.batch_size : (i + 1) * cfg.batch_size]
                xb = x_train[src.unsqueeze(1), idx]  # (R, B, d)
                sae.normalize_decoder()
                recon, z = sae.forward(xb)
                mse = (recon - xb).pow(2).mean((1, 2))
                l1 = z.abs().mean((1, 2))
                loss = (mse + coefs * l1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)
            last = epoch + 1 == end
            if state_path is not None and epoch + 1 < cfg.epochs and (last or time.monotonic() - saved_at >= save_seconds):
                _save_state(state_path, sae, opt, epoch + 1, gens, seconds())
                saved_at = time.monotonic()
    if end == cfg.epochs:
        sae.normalize_decoder()
    return end - start, end == cfg.epochs, seconds()


@torch.no_grad()
def _evaluate(sae: StackedToySAE, x_eval: Tensor, src: Tensor, chunk: int = 16) -> dict[str, Tensor]:
    """EV and sparsity of every run on its dataset's held-out set, in chunks of runs."""
    out: dict[str, list[Tensor]] = {k: [] for k in ("ev", "l0", "l1", "l1_sqrt_l2", "hoyer")}
    for lo in range(0, src.numel(), chunk):
        sl = slice(lo, lo + chunk)
        x = x_eval[src[sl]]
        recon, z = sae.forward(x, sl)
        out["ev"].append(explained_variance(x, recon))
        out["l0"].append(sparsity.l0(z))
        out["l1"].append(sparsity.l1(z))
        out["l1_sqrt_l2"].append(sparsity.l1_over_sqrt_l2(z))
        out["hoyer"].append(sparsity.hoyer(z))
    return {k: torch.cat(v) for k, v in out.items()}


# On a CPU a stack is fastest while its (batch, m) activations stay in the last-level cache
# (docs/benchmarks.md#toy-sweep-stacked-training).
CPU_STACK_ACTIVATION_BYTES = 24 * 2**20


def _fitting_stack(m: int, d: int, cfg: SweepConfig) -> int:
    """Runs per batched model within cfg.memory_gb: weights, gradients and Adam moments (4·2md floats)
    plus about six (batch, m) activations per run; on a CPU also within the cache-sized budget above."""
    per_run = 4 * (8 * m * d + 4 * m + 6 * cfg.batch_size * m)
    stack = int(cfg.memory_gb * 2**30 // per_run)
    if torch.device(cfg.device).type == "cpu":
        stack = min(stack, CPU_STACK_ACTIVATION_BYTES // (4 * cfg.batch_size * m))
    return max(1, stack)


def _fingerprint(x_train: Tensor, datasets: list[ToyData], cfg: SweepConfig) -> str:
    """What decides a sweep's results: its settings, its datasets' names and seeds, and their data."""
    h = hashlib.sha256(cfg.model_dump_json(exclude={"max_stack", "memory_gb", "device"}).encode())
    h.update(json.dumps([(ds.name, ds.seed) for ds in datasets]).encode())
    h.update(x_train.numpy().tobytes())
    for ds in datasets:
        if ds.features is not None:
            h.update(ds.features.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _warn_of_other_sweeps(folder: Path) -> None:
    """A sweep about to start afresh says so when its checkpoint folder holds other sweeps' unfinished
    work: a changed setting or changed data (a different fingerprint) would otherwise retrain silently."""
    if folder.exists() or not folder.parent.is_dir():
        return
    others = sorted(p.name for p in folder.parent.iterdir() if p.is_dir())
    if others:
        warnings.warn(
            f"{folder.parent} holds unfinished work of other sweeps ({', '.join(others)}) whose settings or data differ "
            f"from this one's; they are kept, and this sweep starts afresh in {folder.name}",
            stacklevel=3,
        )


def run_sweep(
    datasets: list[ToyData],
    cfg: SweepConfig,
    progress: bool = True,
    checkpoint_dir: Path | str | None = None,
    save_seconds: float = 600.0,
    stop_after_epochs: int | None = None,
) -> list[RunResult]:
    """Train and evaluate one toy SAE per (dataset, latents, coef), all runs of a size as one stacked model.

    Datasets must share their shape; each is split into train/eval with its own seed. With
    `checkpoint_dir`, a sweep keeps each finished stack's results and the unfinished stack's state
    there (under a fingerprint of settings and data) and a rerun resumes; the folder is removed once
    the sweep completes. `stop_after_epochs` ends the call after that many epochs of training (a
    deliberate interruption, used by tests) and returns the runs finished so far.
    """
    if not datasets:
        raise UserError("no datasets to sweep over")
    shapes = {tuple(ds.x.shape) for ds in datasets}
    if len(shapes) != 1:
        raise ValueError(f"datasets of one sweep must share their shape, got {sorted(shapes)}")
    for ds in datasets:
        if not torch.isfinite(ds.x).all():
            raise UserError(f"dataset {ds.name!r} (seed {ds.seed}) holds NaN/inf values; clean the input vectors")
        if float(ds.x.double().var(0).sum()) == 0.0:
            raise UserError(
                f"dataset {ds.name!r} (seed {ds.seed}) is one constant vector in all {ds.x.shape[0]} rows; EV would be 0/0: give varied vectors"
            )
    parts = [split(ds.x.float(), cfg.eval_fraction, ds.seed) for ds in datasets]
    x_train = torch.stack([p[0] for p in parts])
    x_eval = torch.stack([p[1] for p in parts])
    d = x_train.shape[-1]
    folder = Path(checkpoint_dir) / _fingerprint(x_train, datasets, cfg) if checkpoint_dir is not None else None
    dev = torch.device(cfg.device)
    x_train, x_eval = x_train.to(dev), x_eval.to(dev)
    seeds = sorted({ds.seed for ds in datasets})
    grid = [(k, c) for k in range(len(datasets)) for c in cfg.coefs]
    if folder is not None:
        _warn_of_other_sweeps(folder)
        folder.mkdir(parents=True, exist_ok=True)
    budget = stop_after_epochs
    results: list[RunResult] = []
    for m in cfg.latents:
        stack = cfg.max_stack or _fitting_stack(m, d, cfg)
        for lo in range(0, len(grid), stack):
            cells = grid[lo : lo + stack]
            done = folder / f"m{m}-runs{lo}-{lo + len(cells)}.json" if folder is not None else None
            if done is not None and done.exists():
                results += [RunResult.model_validate(r) for r in read_json(done, "sweep checkpoint", "delete it to retrain that part")]
                continue
            if budget is not None and budget <= 0:
                return results
            src = torch.tensor([k for k, _ in cells], device=dev)
            run_seeds = [datasets[k].seed for k, _ in cells]
            slot = torch.tensor([seeds.index(s) for s in run_seeds])
            coefs = torch.tensor([c for _, c in cells], dtype=torch.float32, device=dev)
            sae = StackedToySAE(run_seeds, d, m, dev)
            desc = f"toy SAEs m={m} runs {lo + 1}-{lo + len(cells)}/{len(grid)}"
            state = done.with_suffix(".pt") if done is not None else None
            trained, complete, seconds = _train_stack(
                sae, x_train, src, slot, seeds, coefs, cfg, desc, progress, state, save_seconds, budget
            )
            if budget is not None:
                budget -= trained
            if not complete:
                return results
            stack_results = _score_stack(sae, x_eval, src, cells, datasets, m, cfg, seconds)
            if done is not None:
                atomic_write_text(done, json.dumps([r.model_dump() for r in stack_results]))
                done.with_suffix(".pt").unlink(missing_ok=True)
            results += stack_results
    if folder is not None:
        shutil.rmtree(folder)
        with contextlib.suppress(OSError):  # only when no other sweep's checkpoints wait there
            folder.parent.rmdir()
    return results


def _score_stack(
    sae: StackedToySAE,
    x_eval: Tensor,
    src: Tensor,
    cells: list[tuple[int, float]],
    datasets: list[ToyData],
    m: int,
    cfg: SweepConfig,
    seconds: float | None,
) -> list[RunResult]:
    """Held-out metrics of every run of a trained stack, with MMCS/MCC where ground truth exists; each run
    gets an equal share of the stack's training seconds."""
    metrics = _evaluate(sae, x_eval, src)
    out = []
    for r, (k, c) in enumerate(cells):
        ds = datasets[k]
        row = {key: float(val[r]) for key, val in metrics.items()}
        mmcs = mcc = None
        if ds.features is not None:
            dec = sae.W_dec[r].detach().cpu()
            mmcs = recovery.mmcs(ds.features, dec)
            mcc = recovery.mcc(ds.features, dec) if cfg.mcc else None
        share = None if seconds is None else seconds / len(cells)
        out.append(RunResult(data=ds.name, seed=ds.seed, latents=m, coef=c, train_seconds=share, mmcs=mmcs, mcc=mcc, **row))
    return out


def summarize(runs: list[RunResult]) -> list[SweepPoint]:
    """Mean ± s.e.m. over seeds per (data, latents, coef), in first-seen order."""
    groups: dict[tuple[str, int, float], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.data, r.latents, r.coef), []).append(r)
    points = []
    for (data, m, c), rs in groups.items():
        mean: dict[str, float] = {}
        sem: dict[str, float | None] = {}
        for key in METRICS:
            vals = [getattr(r, key) for r in rs if getattr(r, key) is not None]
            if not vals:
                continue
            arr = np.asarray(vals, dtype=np.float64)
            mean[key] = float(arr.mean())
            sem[key] = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else None
        points.append(SweepPoint(data=data, latents=m, coef=c, n_seeds=len(rs), sem=sem, **mean))
    return points


def sparsity_at_ev(points: list[SweepPoint], ev: float = 0.9, metric: str = "l1_sqrt_l2") -> list[dict]:
    """Where each (data, latents) frontier crosses EV = `ev`: `metric` interpolated linearly in EV between the
    last coefficient still reaching `ev` and the next one (None when no coefficient, or every one, reaches it).
    Lower means the data is reconstructed as well with sparser codes."""
    out = []
    for data, m in dict.fromkeys((p.data, p.latents) for p in points):
        ps = sorted((p for p in points if p.data == data and p.latents == m), key=lambda p: p.coef)
        value = None
        for a, b in itertools.pairwise(ps):
            if a.ev >= ev > b.ev:
                t = (a.ev - ev) / (a.ev - b.ev)
                value = getattr(a, metric) + t * (getattr(b, metric) - getattr(a, metric))
                break
        out.append({"data": data, "latents": m, "ev": ev, metric: value})
    return out
