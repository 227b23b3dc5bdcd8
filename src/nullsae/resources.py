"""Memory and disk estimates, checked before anything is allocated: a setting that cannot fit is refused
in one line with the estimate and the limit, instead of being found by the allocator mid-run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nullsae.errors import UserError

FLOAT = 4  # bytes of a float32
HEADROOM = 0.9  # plan to use at most this share of what is free


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**27 else f"{n / 2**20:,.0f} MiB"


def free_memory(device: Any = "cpu") -> tuple[int, str] | None:
    """(bytes free, what that is) on `device`: free GPU memory on CUDA, else the machine's available RAM
    (psutil if installed, else /proc/meminfo); None where it cannot be read."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free GPU memory on {device}"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "available memory"
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available memory"
    except OSError:
        pass
    return None


def sae_train_bytes(d_in: int, n_latents: int, batch_size: int) -> int:
    """One SAE in training: weights, gradients and two Adam moments (4 × (2·d·m + m + d) floats), plus
    the batch's pre-activations, codes and their gradients (≈ 3 · batch · m floats)."""
    params = 2 * d_in * n_latents + n_latents + d_in
    return FLOAT * (4 * params + 3 * batch_size * n_latents)


def check_memory(need: int, what: str, fix: str, device: Any = "cpu") -> None:
    """Refuse `what` if it needs more than `HEADROOM` of the free memory on `device`."""
    free = free_memory(device)
    if free is not None and need > HEADROOM * free[0]:
        raise UserError(f"{what} needs about {_gib(need)} but only {_gib(free[0])} of {free[1]} is left; {fix}")


def check_disk(need: int, folder: str | Path, what: str, fix: str) -> None:
    """Refuse `what` if it would write more than `HEADROOM` of the free space of the disk holding `folder`."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if need > HEADROOM * free:
        raise UserError(f"{what} needs about {_gib(need)} of disk but only {_gib(free)} is free under {probe}; {fix}")


def check_plan_memory(plan: Any) -> None:
    """The SAEs a run trains together (an SAE and its baselines: one layer and seed of one task), a live
    stream's buffer and the evaluation split must fit in the free memory of the run's device."""
    from nullsae.devices import resolve_device

    cfg = plan.config
    device = resolve_device(cfg.device)
    for task in plan.tasks:
        for layer, seed in sorted({(c.layer, c.seed) for c in task.cells}):
            group = [c for c in task.cells if c.layer == layer and c.seed == seed]
            need = sum(sae_train_bytes(c.sae_config.d_in, c.sae_config.n_latents, cfg.train.batch_size) for c in group)
            check_memory(
                need,
                f"training {len(group)} SAE{'s' if len(group) > 1 else ''} of {task.label} layer {layer} together (m = {group[0].sae_config.n_latents:,} latents)",
                "lower --sae.n-latents or --sae.expansion, or --train.batch-size",
                device,
            )
        d = plan.shapes[task.model].d_model
        if cfg.train.stream == "live":
            check_memory(
                2 * FLOAT * cfg.train.buffer_tokens * d,
                f"the live stream's shuffle buffer of {task.label}",
                "lower --train.buffer-tokens",
                device,
            )
        if "reconstruction" in cfg.metrics:  # the evaluation split is held whole (float32, and float64 for its mean)
            check_memory(3 * FLOAT * cfg.tokens.eval * d, f"the evaluation split of {task.label} in memory", "lower --tokens.eval", device)


def check_plan_disk(plan: Any, run_dir: str | Path) -> None:
    """A run's train-split activation cache (every layer of one task at a time) must fit on the disk of `run_dir`."""
    cfg = plan.config
    if cfg.train.stream == "live":
        return
    need = max(FLOAT * cfg.tokens.train * plan.shapes[t.model].d_model * len(t.layers) for t in plan.tasks)
    check_disk(need, run_dir, "the train-split activation cache", "lower --tokens.train, free disk space, or use --train.stream live")
