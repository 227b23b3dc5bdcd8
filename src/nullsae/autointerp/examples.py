"""Per-latent examples for auto-interpretability (docs/spec.md#autointerp): explainer windows, test windows, negatives.

Activations are streamed in coordinate form (`SparseActs`): nothing of size (tokens × latents) is ever
held. Two passes over the windows: the first counts, per latent, the windows in which it fires (the
`min_examples` filter and the latent sample); the second keeps, for the sampled latents only, the
top windows, a uniform reservoir of activating windows (for the quantile bins) and which of some
pre-drawn random windows the latent fires in (for the negatives). A last, small encode of the chosen
windows recovers their per-token activations. An "example" is a window in which the latent fires.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.autointerp.config import ExampleConfig
from nullsae.errors import UserError
from nullsae.progress import progress_bar

if TYPE_CHECKING:
    from nullsae.sae.architectures import SAE


@dataclass
class SparseActs:
    """Nonzero latent activations of some windows: entry i is latent[i] at (window[i], pos[i])."""

    window: Tensor  # (nnz,) int64, global window ids
    pos: Tensor  # (nnz,) int64
    latent: Tensor  # (nnz,) int64
    value: Tensor  # (nnz,) float32

    @classmethod
    def from_dense(cls, acts: Tensor, window_ids: Tensor) -> SparseActs:
        """From a dense (B, T, m) block of activations for the windows `window_ids` (B,)."""
        b, t, lat = acts.nonzero(as_tuple=True)
        return cls(window_ids.long()[b], t, lat, acts[b, t, lat].float())

    @classmethod
    def from_topk(cls, values: Tensor, indices: Tensor, window_ids: Tensor) -> SparseActs:
        """From a TopK code: (B, T, k) values and latent indices for the windows `window_ids` (B,)."""
        b, t, j = (values != 0).nonzero(as_tuple=True)
        return cls(window_ids.long()[b], t, indices[b, t, j].long(), values[b, t, j].float())


class ActivationSource:
    """Token windows (N, T) plus a function that encodes any subset of them into `SparseActs`.

    `encode(window_ids)` returns the activations of those windows (global ids); it may read a cache
    or run the model and SAE live. This is the only thing example collection needs to know.
    """

    def __init__(
        self, tokens: Tensor, encode: Callable[[Tensor], SparseActs], n_latents: int, batch_windows: int = 64, progress: bool = True
    ):
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise UserError(f"token windows must be a non-empty (N, T) tensor, got shape {tuple(tokens.shape)}")
        self.tokens = tokens.long()
        self.encode = encode
        self.n_latents = n_latents
        self.batch_windows = batch_windows
        self.progress = progress

    @property
    def n_windows(self) -> int:
        return self.tokens.shape[0]

    def batches(self, desc: str) -> Iterator[SparseActs]:
        """Every window once, in order, `batch_windows` at a time."""
        for start in progress_bar(
            range(0, self.n_windows, self.batch_windows), desc=desc, unit="batch", leave=False, disable=not self.progress
        ):
            yield self.encode(torch.arange(start, min(start + self.batch_windows, self.n_windows)))


def sae_encoder(sae: SAE, residuals: Callable[[Tensor], Tensor], block_bytes: int = 2**26) -> Callable[[Tensor], SparseActs]:
    """`encode(window_ids)` for an `ActivationSource`: the windows' residuals (B, T, d) through the
    SAE, in token chunks small enough that no dense (chunk, m) block exceeds `block_bytes`."""
    m = int(sae.W_dec.shape[0])
    chunk = max(1, block_bytes // (4 * m))

    @torch.no_grad()
    def encode(window_ids: Tensor) -> SparseActs:
        x = residuals(window_ids)
        B, T, d = x.shape
        flat = x.reshape(B * T, d).to(sae.W_dec.device, sae.W_dec.dtype)
        parts = []
        for start in range(0, B * T, chunk):
            z = sae.encode(flat[start : start + chunk]).float().cpu()
            rows, lat = z.nonzero(as_tuple=True)
            parts.append((rows + start, lat, z[rows, lat]))
        rows, lat, val = (torch.cat(c) for c in zip(*parts))
        return SparseActs(window_ids.long()[rows // T], rows % T, lat, val)

    return encode


class FiringCounts(BaseModel):
    """Pass-1 result: per latent, the windows and tokens in which it fires."""

    model_config = {"arbitrary_types_allowed": True}
    windows: Tensor  # (m,) int64
    tokens: Tensor  # (m,) int64
    n_windows: int
    n_tokens: int


class LatentSelection(BaseModel):
    """Which latents are interpreted, and how many the `min_examples` filter removed."""

    latents: list[int]
    n_total: int
    n_eligible: int
    n_removed: int  # latents with fewer than min_examples activating windows (dead ones included)
    n_dead: int  # latents that never fire


@dataclass
class Example:
    """One window with the latent's per-token activations (zeros for a negative)."""

    window_id: int
    tokens: Tensor  # (T,) int64
    acts: Tensor  # (T,) float32
    quantile: int = -1  # bin of an activating test window; -1 for explainer windows and negatives

    @property
    def max_act(self) -> float:
        return float(self.acts.max())


@dataclass
class LatentExamples:
    """Everything auto-interpretability needs for one latent."""

    latent: int
    n_active_windows: int
    explain: list[Example]  # shown to the explainer (and used by the §4 entropy)
    positives: list[Example]  # activating test windows, quantile-binned, disjoint from `explain`
    negatives: list[Example]  # random windows where the latent never fires


def _window_max(acts: SparseActs, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Collapse positions: unique (window, latent) pairs with the max activation over the window."""
    keys = acts.window * m + acts.latent
    uniq, inv = torch.unique(keys, return_inverse=True)
    vmax = torch.full((uniq.numel(),), -math.inf).scatter_reduce_(0, inv, acts.value, reduce="amax")
    return uniq // m, uniq % m, vmax


def count_firing(source: ActivationSource) -> FiringCounts:
    """Pass 1: per latent, the number of windows and of tokens in which it is nonzero."""
    m = source.n_latents
    win = torch.zeros(m, dtype=torch.long)
    tok = torch.zeros(m, dtype=torch.long)
    for acts in source.batches("counting latent firing"):
        tok += torch.bincount(acts.latent, minlength=m)
        _, lat, _ = _window_max(acts, m)
        win += torch.bincount(lat, minlength=m)
    return FiringCounts(windows=win, tokens=tok, n_windows=source.n_windows, n_tokens=source.tokens.numel())


def select_latents(counts: FiringCounts, cfg: ExampleConfig) -> LatentSelection:
    """Sample `n_latents` latents (seeded) among those firing in at least `min_examples` windows."""
    eligible = (counts.windows >= cfg.min_examples).nonzero().flatten()
    gen = torch.Generator().manual_seed(cfg.seed)
    chosen = eligible[torch.randperm(eligible.numel(), generator=gen)[: cfg.n_latents_sampled]].sort().values
    m = counts.windows.numel()
    return LatentSelection(
        latents=chosen.tolist(),
        n_total=m,
        n_eligible=int(eligible.numel()),
        n_removed=int(m - eligible.numel()),
        n_dead=int((counts.windows == 0).sum()),
    )


class _TopPerGroup:
    """Streaming top-k per group: append candidates, compact to the k largest keys per group.

    Compaction is two stable sorts (by key, then by group) and a rank-within-group cut, so the
    buffer never exceeds about twice n_groups·k entries, whatever the stream length.
    """

    def __init__(self, k: int, n_groups: int):
        self.k = k
        self.budget = max(2 * k * n_groups, 4096)
        self.cols: list[list[Tensor]] = [[], [], [], []]  # group, key, window, value
        self.size = 0

    def add(self, group: Tensor, key: Tensor, window: Tensor, value: Tensor) -> None:
        for col, t in zip(self.cols, (group, key, window, value)):
            col.append(t)
        self.size += group.numel()
        if self.size > self.budget:
            self._compact()

    def _compact(self) -> None:
        group, key, window, value = (torch.cat(c) for c in self.cols)
        order = torch.argsort(key, descending=True, stable=True)
        order = order[torch.argsort(group[order], stable=True)]
        g = group[order]
        _, counts = torch.unique_consecutive(g, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(g.numel()) - starts.repeat_interleave(counts)
        keep = order[rank < self.k]
        self.cols = [[group[keep]], [key[keep]], [window[keep]], [value[keep]]]
        self.size = keep.numel()

    def result(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(group, key, window, value), sorted by group then key descending."""
        if self.size == 0:
            e = torch.empty(0)
            return e.long(), e, e.long(), e
        self._compact()
        group, key, window, value = (c[0] for c in self.cols)
        return group, key, window, value


def collect_examples(source: ActivationSource, latents: list[int], cfg: ExampleConfig) -> dict[int, LatentExamples]:
    """Pass 2 and the final fetch: explainer, activating-test and negative examples of `latents`."""
    m, n_win = source.n_latents, source.n_windows
    if not latents:
        return {}
    lat_t = torch.tensor(latents, dtype=torch.long)
    if lat_t.min() < 0 or lat_t.max() >= m:
        raise UserError(f"latent ids must be in [0, {m}); got {latents[:5]}...")
    slot_of = torch.full((m,), -1, dtype=torch.long)
    slot_of[lat_t] = torch.arange(len(latents))
    L = len(latents)
    gens = [_latent_generator(cfg.seed, lat) for lat in latents]  # a latent's draws never depend on which others are collected

    # Pre-drawn negative candidates: (slot, window) keys, sorted for membership tests.
    n_cand = min(n_win, 4 * cfg.n_negative)
    cand = torch.stack([torch.randperm(n_win, generator=g)[:n_cand] for g in gens])  # (L, C)
    cand_keys, cand_order = (torch.arange(L)[:, None] * n_win + cand).flatten().sort()
    disqualified = torch.zeros(L * n_cand, dtype=torch.bool)

    top = _TopPerGroup(cfg.top_k, L)
    res = _TopPerGroup(cfg.reservoir, L)
    n_active = torch.zeros(L, dtype=torch.long)
    for acts in source.batches("collecting latent examples"):
        sel = slot_of[acts.latent] >= 0
        if not sel.any():
            continue
        sub = SparseActs(acts.window[sel], acts.pos[sel], acts.latent[sel], acts.value[sel])
        win, lat, vmax = _window_max(sub, m)
        slot = slot_of[lat]
        n_active += torch.bincount(slot, minlength=L)
        top.add(slot, vmax, win, vmax)
        res.add(slot, _hash_uniform(cfg.seed, lat, win), win, vmax)
        keys = slot * n_win + win
        where = torch.searchsorted(cand_keys, keys).clamp_max(cand_keys.numel() - 1)
        hit = cand_keys[where] == keys
        disqualified[where[hit]] = True

    top_g, _, top_w, _ = top.result()
    res_g, _, res_w, res_v = res.result()
    not_firing = torch.empty_like(disqualified)
    not_firing[cand_order] = ~disqualified
    not_firing = not_firing.view(L, n_cand)

    plan: dict[int, tuple[list[int], list[tuple[int, int]], list[int]]] = {}
    for s in range(L):
        tw = top_w[top_g == s]
        explain = tw[torch.randperm(tw.numel(), generator=gens[s])[: cfg.n_explain]]
        shown = set(explain.tolist())
        rw, rv = res_w[res_g == s], res_v[res_g == s]
        keep = torch.tensor([w not in shown for w in rw.tolist()], dtype=torch.bool)
        rw, rv = rw[keep], rv[keep]
        pos: list[tuple[int, int]] = []
        if rw.numel():
            rw = rw[torch.argsort(rv, stable=True)]
            for b, chunk in enumerate(torch.tensor_split(rw, min(cfg.n_bins, rw.numel()))):
                pick = chunk[torch.randperm(chunk.numel(), generator=gens[s])[: cfg.per_bin]]
                pos += [(int(w), b) for w in pick]
        neg = cand[s][not_firing[s]][: cfg.n_negative].tolist()
        plan[latents[s]] = (explain.tolist(), pos, neg)

    token_acts = _fetch_token_acts(source, plan)
    out: dict[int, LatentExamples] = {}
    for s, lat in enumerate(latents):
        explain, pos, neg = plan[lat]
        T = source.tokens.shape[1]
        out[lat] = LatentExamples(
            latent=lat,
            n_active_windows=int(n_active[s]),
            explain=[Example(w, source.tokens[w], token_acts[(w, lat)]) for w in explain],
            positives=[Example(w, source.tokens[w], token_acts[(w, lat)], quantile=b) for w, b in pos],
            negatives=[Example(w, source.tokens[w], torch.zeros(T)) for w in neg],
        )
    return out


def _latent_generator(seed: int, latent: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_hash_uniform(seed, torch.tensor([latent]), torch.tensor([-1]))[0] * 2**62))


def _hash_uniform(seed: int, latent: Tensor, window: Tensor) -> Tensor:
    """A pseudo-random number in [0, 1) per (seed, latent, window), the same whatever else is sampled:
    the reservoir keeps a latent's activating windows with the smallest keys (a uniform sample), so a
    resumed run that collects fewer latents draws the same examples for each."""
    mask = (1 << 62) - 1
    x = (window.long() * 0x2545F491 + latent.long() * 0x9E3779B1 + (seed + 1) * 0x632BE5AB) & mask
    for mult in (0xBF58476D, 0x94D049BB):  # multiply-xorshift rounds (splitmix-style), kept within 62 bits
        x = ((x ^ (x >> 29)) * mult) & mask
    x = x ^ (x >> 31)
    return (x & ((1 << 53) - 1)).double() / 2.0**53


def _fetch_token_acts(
    source: ActivationSource, plan: dict[int, tuple[list[int], list[tuple[int, int]], list[int]]]
) -> dict[tuple[int, int], Tensor]:
    """Per-token activations of the (window, latent) pairs the examples need, one encode per window."""
    m, T = source.n_latents, source.tokens.shape[1]
    pairs = sorted({(w, lat) for lat, (ex, pos, _) in plan.items() for w in ex + [w for w, _ in pos]})
    if not pairs:
        return {}
    keys = torch.tensor([w * m + lat for w, lat in pairs], dtype=torch.long)
    dense = torch.zeros(len(pairs), T)
    windows = torch.unique(keys // m)
    for start in range(0, windows.numel(), source.batch_windows):
        acts = source.encode(windows[start : start + source.batch_windows])
        k = acts.window * m + acts.latent
        where = torch.searchsorted(keys, k).clamp_max(keys.numel() - 1)
        hit = keys[where] == k
        dense[where[hit], acts.pos[hit]] = acts.value[hit]
    return {p: dense[i] for i, p in enumerate(pairs)}
