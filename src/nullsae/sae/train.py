"""Train many SAEs on one stream of activation batches (docs/spec.md#architectures, #baselines).

Every SAE sees the same batches in the same order; a trained SAE and its random baselines share
their seed and so their initialisation. Checkpoints hold every SAE, optimiser and counter, so a
resumed run ends bit-identical to an uninterrupted one (on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.errors import UserError
from nullsae.io_utils import atomic_torch_save
from nullsae.progress import progress_bar
from nullsae.sae.architectures import SAE
from nullsae.sae.config import SAEConfig, TrainConfig, parse_sae_config


class BatchStream(Protocol):
    """Deterministic (B, d) activation batches; `batches(s)` yields exactly what step s would get."""

    d_in: int

    def batches(self, start_step: int = 0) -> Iterator[Tensor]: ...


def default_lr(n_latents: int) -> float:
    """Heap et al. / Gao et al. scaling: 2e-4 / sqrt(m / 2^14)."""
    return 2e-4 / math.sqrt(n_latents / 2**14)


class TrainRecord(BaseModel):
    step: int
    fvu: float
    l0: float
    drift: float


class TrainResult(BaseModel):
    """Typed outcome of training one SAE."""

    name: str
    steps: int
    tokens: int
    skipped_batches: int
    fvu: float  # training FVU on the last batch
    l0: float
    dead_fraction: float  # latents that did not fire in the last `dead_tokens` tokens (capped by tokens seen)
    decoder_drift: float  # mean cos(W_dec,j, W_dec,j⁽⁰⁾)
    history: list[TrainRecord]


def fused_adam(params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam fused into one kernel per step where torch has one (CPU and CUDA floats): one pass over
    the weights instead of about ten (~13 % off a CPU SAE step)."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused)


def make_optimizer(sae: SAE, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam over the SAE's trainable tensors."""
    return fused_adam([p for p in sae.parameters() if p.requires_grad], lr, betas)


class _State:
    """Mutable training state of one SAE."""

    def __init__(self, sae: SAE, cfg: TrainConfig):
        self.sae = sae
        self.base_lr = cfg.lr or default_lr(sae.cfg.n_latents)
        self.opt = make_optimizer(sae, self.base_lr, cfg.betas)
        self.since_fired = torch.zeros(sae.cfg.n_latents, dtype=torch.long)
        self.last: dict[str, float] = {"fvu": float("nan"), "l0": float("nan")}
        self.history: list[dict[str, float]] = []
        self.l0_ema: float | None = None  # smoothed L0, the sparsity controller's input


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Learning rate at `step` over the base rate: linear warm-up (at most the run's steps), the optional step drop, linear final decay."""
    steps = cfg.steps
    assert steps is not None, "lr_factor needs the run's number of steps"
    warmup = min(cfg.warmup_steps, steps)
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if cfg.lr_drop_step is not None and step >= cfg.lr_drop_step:
        factor *= cfg.lr_drop_factor
    decay_steps = int(cfg.decay_fraction * steps)
    if decay_steps and step >= steps - decay_steps:
        factor *= (steps - step) / decay_steps
    return factor


def _save_checkpoint(path: Path, step: int, tokens: int, skipped: int, states: dict[str, _State]) -> None:
    payload = {
        "step": step,
        "tokens": tokens,
        "skipped": skipped,
        "saes": {
            name: {
                "cfg": st.sae.cfg.model_dump_json(),
                "model": st.sae.state_dict(),
                "opt": st.opt.state_dict(),
                "since_fired": st.since_fired,
                "last": st.last,
                "history": st.history,
                "l0_ema": st.l0_ema,
            }
            for name, st in states.items()
        },
    }
    atomic_torch_save(payload, path)


def _same_config(saved_json: str, cfg: SAEConfig) -> bool:
    """Whether a checkpoint's SAE config trains the same SAE (fields its architecture ignores aside)."""
    try:
        return parse_sae_config(saved_json).key_fields() == cfg.key_fields()
    except (ValueError, UserError):  # a field this version does not know, or a config it refuses
        return False


def _load_checkpoint(path: Path, states: dict[str, _State]) -> tuple[int, int, int]:
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise UserError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); delete it to restart training") from None
    saved = payload.get("saes", {})
    if set(saved) != set(states):
        raise UserError(
            f"checkpoint {path} holds SAEs {sorted(saved)} but this run trains {sorted(states)}; use another run directory or delete it"
        )
    for name, st in states.items():
        if not _same_config(saved[name]["cfg"], st.sae.cfg):
            raise UserError(f"checkpoint {path}: SAE '{name}' was trained with a different config; use another run directory or delete it")
        st.sae.load_state_dict(saved[name]["model"])
        st.opt.load_state_dict(saved[name]["opt"])
        st.since_fired = saved[name]["since_fired"]
        st.last = dict(saved[name]["last"])
        st.history = [dict(h) for h in saved[name]["history"]]
        st.l0_ema = saved[name].get("l0_ema")
    return int(payload["step"]), int(payload["tokens"]), int(payload["skipped"])


def train_saes(
    saes: dict[str, SAE],
    stream: BatchStream,
    cfg: TrainConfig,
    checkpoint_dir: Path | str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    callback: Callable[[int], None] | None = None,
    callback_every: int = 0,
) -> dict[str, TrainResult]:
    """Train every SAE on the same batches; resume from `checkpoint_dir/trainer.pt` if present.

    `stop_after` ends the call after that many steps (a deliberate interruption, used by tests);
    `callback(step)` runs every `callback_every` steps (evaluation curves during training).
    """
    if not saes:
        raise UserError("no SAEs to train")
    if cfg.steps is None:  # one pass over the stream
        steps = getattr(stream, "steps_per_epoch", None)
        if steps is None:
            raise UserError("this activation stream has no fixed length; give the number of training steps")
        cfg = cfg.model_copy(update={"steps": steps})
    assert cfg.steps is not None
    for name, sae in saes.items():
        if sae.cfg.d_in != stream.d_in:
            raise UserError(f"SAE '{name}' expects d_in = {sae.cfg.d_in} but the activations have d = {stream.d_in}")
    states = {name: _State(sae, cfg) for name, sae in saes.items()}
    ckpt = Path(checkpoint_dir) / "trainer.pt" if checkpoint_dir is not None else None
    step = tokens = skipped = 0
    if ckpt is not None and ckpt.exists():
        step, tokens, skipped = _load_checkpoint(ckpt, states)
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    for st in states.values():
        st.sae.train()

    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = progress_bar(total=cfg.steps, initial=step, desc=f"training {len(saes)} SAE(s)", disable=not progress, unit="step")
    batches = stream.batches(step)
    while step < end:
        try:
            x = next(batches)
        except StopIteration:
            raise UserError(f"the activation stream ended after {step} of {cfg.steps} steps; ask for fewer steps or more tokens") from None
        if not torch.isfinite(x).all():
            if not cfg.skip_nonfinite:
                raise UserError(f"activation batch {step} contains NaN or inf; clean the activations or allow skipping")
            skipped += 1
        else:
            _train_step(states, x, step, cfg)
            tokens += x.shape[0]
        step += 1
        bar.update(1)
        if progress and step % 10 == 0:
            bar.set_postfix({n: f"fvu {st.last['fvu']:.3f}" for n, st in list(states.items())[:3]})
        if step % cfg.log_every == 0 or step == cfg.steps:
            for st in states.values():
                st.history.append({"step": step, **st.last, "drift": st.sae.decoder_drift()})
        if callback is not None and callback_every and (step % callback_every == 0 or step == cfg.steps):
            callback(step)
        if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == end):
            _save_checkpoint(ckpt, step, tokens, skipped, states)
    bar.close()
    for st in states.values():
        st.sae.eval()
    return {name: _result(name, st, step, tokens, skipped) for name, st in states.items()}


def _train_step(states: dict[str, _State], x: Tensor, step: int, cfg: TrainConfig) -> None:
    factor = lr_factor(step, cfg)
    for name, st in states.items():
        sae = st.sae
        x_in = x.to(sae.W_dec.dtype)
        if not bool(sae.initialized):
            sae.initialize(x_in)
        dead = st.since_fired >= sae.cfg.dead_tokens
        out = sae(x_in, dead_mask=dead)
        if not torch.isfinite(out.loss):
            raise UserError(f"SAE '{name}' diverged at step {step} (loss is {float(out.loss)}); lower the learning rate")
        for group in st.opt.param_groups:
            group["lr"] = st.base_lr * factor
        st.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.before_step()
        st.opt.step()
        sae.after_step()
        st.since_fired += x.shape[0]
        st.since_fired[out.fired.cpu()] = 0
        l0 = float(out.terms["l0"])
        previous = st.l0_ema
        st.l0_ema = l0 if previous is None else 0.95 * previous + 0.05 * l0
        sae.adapt_sparsity(st.l0_ema, previous)
        st.last = {"fvu": float(out.terms["fvu"]), "l0": l0}


def _result(name: str, st: _State, step: int, tokens: int, skipped: int) -> TrainResult:
    window = min(st.sae.cfg.dead_tokens, max(tokens, 1))
    return TrainResult(
        name=name,
        steps=step,
        tokens=tokens,
        skipped_batches=skipped,
        fvu=st.last["fvu"],
        l0=st.last["l0"],
        dead_fraction=float((st.since_fired >= window).float().mean()),
        decoder_drift=st.sae.decoder_drift(),
        history=[TrainRecord.model_validate(h) for h in st.history],
    )
