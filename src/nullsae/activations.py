"""Residual activations for SAE training: an on-disk cache and deterministic shuffled batch streams.

Cache layout, one folder per (model, variant, data slice), one sub-folder per layer:
    <root>/activations/<model>/<variant>/<data digest>/tokens.safetensors   (N, T) token ids + meta.json
    .../layer_<ℓ>/shard_<first>-<end window>.safetensors                      (rows, d) activations
    .../layer_<ℓ>/meta.json                                                   written last: the layer is complete
Row r of a layer is token r of the flattened windows (window r // T, position r % T), so token ids
are available for every activation row (auto-interp needs them).

Streams implement the trainer's contract: `d_in` and `batches(start_step)`, which yields exactly the
batches an uninterrupted iteration yields from step `start_step` on (same seed, same order).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file
from torch import Tensor

from nullsae.config import ActivationsConfig
from nullsae.errors import UserError
from nullsae.io_utils import atomic_write_text, read_json, save_safetensors
from nullsae.locks import folder_lock
from nullsae.models.hooks import capture_residuals, check_layers
from nullsae.models.load import LoadedModel, cache_root
from nullsae.progress import progress_bar

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ST_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}  # BF16 is reinterpreted below
_ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class DataSlice(BaseModel):
    """Which token windows: source, split, seed of the split, window length and number of windows."""

    model_config = ConfigDict(frozen=True)

    source: str = "bundled"
    split: str = "train"
    seed: int = 0
    window: int = 128
    n_windows: int
    text_field: str = "text"

    @property
    def digest(self) -> str:
        """Folder name: readable prefix plus a hash of every field."""
        h = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.split}-w{self.window}-n{self.n_windows}-{h}"


def cache_dir(model: str, variant: str, data: DataSlice, root: str | Path | None = None) -> Path:
    """The cache folder of (model, variant, data slice); layers are its sub-folders."""
    base = Path(root) if root is not None else cache_root()
    return base / "activations" / _safe(model) / _safe(variant) / data.digest


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("_") or "model"


class CacheReport(BaseModel):
    """What `fill_cache` did: the folder, which layers it computed and which were already there."""

    directory: str
    written: list[int]
    cached: list[int]
    n_tokens: int
    d_model: int


def fill_cache(
    loaded: LoadedModel,
    windows: Tensor,
    layers: Iterable[int],
    directory: str | Path,
    batch_size: int = 32,
    shard_tokens: int = 2**18,
    dtype: str = "float32",
    progress: bool = True,
) -> CacheReport:
    """Write the residuals of `windows` at `layers` under `directory`, one forward pass per batch for all
    missing layers (stopping after the deepest). Complete layers are reused; finished shards of an
    interrupted run are kept."""
    if dtype not in _DTYPES:
        raise UserError(f"unknown activation dtype '{dtype}'; choose one of {', '.join(_DTYPES)}")
    layers = check_layers(layers, loaded.n_layers)
    with folder_lock(directory, "activation cache entry"):
        return _fill_locked(loaded, windows, layers, Path(directory), batch_size, shard_tokens, dtype, progress)


def _fill_locked(
    loaded: LoadedModel, windows: Tensor, layers: list[int], directory: Path, batch_size: int, shard_tokens: int, dtype: str, progress: bool
) -> CacheReport:
    _write_tokens(directory, windows, loaded)
    cached = [layer for layer in layers if (directory / f"layer_{layer}" / "meta.json").is_file()]
    todo = [layer for layer in layers if layer not in cached]
    n, window = windows.shape
    per_shard = max(1, shard_tokens // window)
    n_shards = -(-n // per_shard)
    device = next(loaded.model.parameters()).device
    for layer in todo:
        (directory / f"layer_{layer}").mkdir(parents=True, exist_ok=True)
    bar = progress_bar(
        total=n * window, desc=f"activations {loaded.name}/{loaded.variant} layers {todo}", unit="tok", disable=not progress or not todo
    )
    checks = {layer: SpreadCheck(loaded, layer) for layer in todo}
    for shard in range(n_shards):
        lo, hi = shard * per_shard, min(n, (shard + 1) * per_shard)
        paths = {layer: directory / f"layer_{layer}" / _shard_name(lo, hi) for layer in todo}
        missing = [layer for layer in todo if not paths[layer].is_file()]
        keep = _keep_rows(windows[lo:hi].cpu(), loaded.bos_id, True)
        for layer in todo:
            if layer not in missing:  # a finished shard of an interrupted run: its rows still count
                checks[layer].update(_load(paths[layer], "acts")[keep].float(), f"windows {lo}-{hi}")
        if missing:
            parts: dict[int, list[Tensor]] = {layer: [] for layer in missing}
            for b in range(lo, hi, batch_size):
                ids = windows[b : min(hi, b + batch_size)].to(device)
                acts = capture_residuals(loaded.model, ids, missing)
                for layer in missing:
                    parts[layer].append(acts[layer].reshape(-1, loaded.d_model).to("cpu", _DTYPES[dtype]))
                bar.update(ids.numel())
            for layer in missing:
                shard_acts = torch.cat(parts[layer]).contiguous()
                checks[layer].update(shard_acts[keep].float(), f"windows {lo}-{hi}")
                save_safetensors({"acts": shard_acts}, paths[layer])
        else:
            bar.update((hi - lo) * window)
    bar.close()
    for layer in todo:
        checks[layer].finish()
        shards = [_shard_name(i * per_shard, min(n, (i + 1) * per_shard)) for i in range(n_shards)]
        meta = {
            "layer": layer,
            "n_rows": n * window,
            "d": loaded.d_model,
            "dtype": dtype,
            "shards": shards,
            "window": window,
            "model": loaded.name,
            "variant": loaded.variant,
        }
        atomic_write_text(directory / f"layer_{layer}" / "meta.json", json.dumps(meta, indent=1))
    return CacheReport(directory=str(directory), written=todo, cached=cached, n_tokens=n * window, d_model=loaded.d_model)


def _shard_name(lo: int, hi: int) -> str:
    """Shard file of windows [lo, hi): named by its range, so a rerun with another shard size never mixes them up."""
    return f"shard_{lo:08d}-{hi:08d}.safetensors"


def _write_tokens(directory: Path, windows: Tensor, loaded: LoadedModel) -> None:
    """Store the token windows once; refuse a folder whose windows differ (a stale or foreign cache)."""
    path = directory / "tokens.safetensors"
    windows = windows.to("cpu", torch.long).contiguous()
    if path.is_file():
        old = _load(path, "tokens")
        if not torch.equal(old, windows):
            raise UserError(
                f"the activation cache {directory} holds other token windows than these; delete that folder or use another cache root"
            )
        return
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors({"tokens": windows}, path)
    meta = {
        "model": loaded.name,
        "variant": loaded.variant,
        "bos_id": loaded.bos_id,
        "n_windows": windows.shape[0],
        "window": windows.shape[1],
    }
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=1))


class DegenerateActivations(UserError):
    """Activations no metric can be computed on: NaN or inf, or no variance at all (FVU would be 0/0)."""


class SpreadCheck:
    """Checks the activations of one (model, variant, layer) as they enter: every value finite, and a
    nonzero total variance over the (non-BOS) rows. Fed batch by batch; one clear error otherwise."""

    def __init__(self, loaded: LoadedModel, layer: int) -> None:
        self.where = f"model {loaded.name}, variant {loaded.variant}, layer {layer}"
        self.n = 0
        self.sum: Tensor | None = None
        self.sum_sq = 0.0

    def update(self, x: Tensor, span: str) -> None:
        bad = ~torch.isfinite(x).all(dim=1)
        if bool(bad.any()):
            nb = int(bad.sum())
            raise DegenerateActivations(
                f"the activations of {self.where} hold NaN or inf in {nb} of {x.shape[0]} rows ({nb / x.shape[0]:.1%}) of {span}; "
                "no metric is defined on them: check the model's weights (a float16 cache can overflow: store float32)"
            )
        x = x.double()
        self.n += x.shape[0]
        self.sum = x.sum(0) if self.sum is None else self.sum + x.sum(0)
        self.sum_sq += float(x.pow(2).sum())

    def finish(self) -> None:
        """Raise if every row is the same vector (all zero included): no variance, FVU undefined."""
        if self.n == 0 or self.sum is None:
            return
        spread = self.sum_sq - float(self.sum.pow(2).sum()) / self.n
        if spread <= 1e-9 * self.sum_sq or self.sum_sq == 0.0:
            what = "all zero" if self.sum_sq == 0.0 else "one constant vector"
            raise DegenerateActivations(
                f"the activations of {self.where} are {what} in all {self.n} rows (100% of rows); with no variance the "
                "fraction of variance unexplained is 0/0, so no reconstruction metric is defined: check the model's weights"
            )


class CachedActivations:
    """One complete layer of the cache, memory-mapped: random access to rows without loading them all."""

    def __init__(self, directory: str | Path, layer: int) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / f"layer_{layer}" / "meta.json"
        if not meta_path.is_file():
            raise UserError(f"no complete activations for layer {layer} in {self.directory}; run `nullsae activations` first")
        meta = read_json(meta_path, "activation cache layer index", f"delete {meta_path.parent} and rerun")
        top = read_json(self.directory / "meta.json", "activation cache index", f"delete {self.directory} and rerun")
        self.layer = layer
        self.d_in: int = int(meta["d"])
        self.n_rows: int = int(meta["n_rows"])
        self.window: int = int(meta["window"])
        self.bos_id: int | None = top.get("bos_id")
        self.tokens: Tensor = _load(self.directory / "tokens.safetensors", "tokens")  # (N, T)
        self._shards: list[np.ndarray] = []
        self._dtype = torch.float32
        for name in meta["shards"]:
            arr, self._dtype = _memmap(self.directory / f"layer_{layer}" / name, "acts")
            self._shards.append(arr)
        self._starts = np.cumsum([0] + [a.shape[0] for a in self._shards])
        if self._starts[-1] != self.n_rows:
            raise UserError(
                f"activation cache {self.directory} layer {layer} is inconsistent ({self._starts[-1]} rows, meta says {self.n_rows}); delete the layer folder and rerun"
            )

    @property
    def token_ids(self) -> Tensor:
        """(n_rows,) token id of every activation row."""
        return self.tokens.reshape(-1)

    def rows(self, index: Tensor) -> Tensor:
        """Activation rows at `index` (any order) as a float32 (len, d) tensor."""
        idx = index.cpu().numpy().astype(np.int64)
        order = np.argsort(idx, kind="stable")  # read in file order, then restore the requested order
        sorted_idx = idx[order]
        out = np.empty((len(idx), self.d_in), dtype=self._shards[0].dtype)
        which = np.searchsorted(self._starts, sorted_idx, side="right") - 1
        for s in np.unique(which):
            sel = which == s
            out[order[sel]] = self._shards[s][sorted_idx[sel] - self._starts[s]]
        t = torch.from_numpy(out)
        if self._dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        return t.float()

    def all(self) -> Tensor:
        """Every row, in order, as float32 (n_rows, d)."""
        return self.rows(torch.arange(self.n_rows))


def _corrupt(path: Path, exc: BaseException) -> UserError:
    return UserError(f"activation cache file {path} is corrupt or unreadable ({type(exc).__name__}); delete {path.parent} and rerun")


def _load(path: Path, key: str) -> Tensor:
    """One tensor of a cache file, or one error line if the file is truncated or corrupt."""
    try:
        return load_file(path)[key]
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise _corrupt(path, exc) from None


def _memmap(path: Path, key: str) -> tuple[np.ndarray, torch.dtype]:
    """A read-only memory map of one tensor in a safetensors file (8-byte header size, JSON header, data)."""
    try:
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
        info = header[key]
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if path.stat().st_size < 8 + header_len + end or end - start != int(np.prod(shape)) * np.dtype(_ST_NUMPY[info["dtype"]]).itemsize:
            raise ValueError("truncated")
        arr = np.memmap(path, dtype=_ST_NUMPY[info["dtype"]], mode="r", offset=8 + header_len + start, shape=shape)
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise _corrupt(path, exc) from None
    return arr, _ST_TORCH[info["dtype"]]


def _keep_rows(tokens: Tensor, bos_id: int | None, exclude_bos: bool) -> Tensor:
    """Flat row indices to train on: all rows, or all but those whose token is BOS."""
    flat = tokens.reshape(-1)
    if exclude_bos and bos_id is not None:
        return torch.nonzero(flat != bos_id).squeeze(1)
    return torch.arange(flat.numel())


def _generator(*keys: int) -> torch.Generator:
    seed = int.from_bytes(hashlib.blake2b(repr(keys).encode(), digest_size=8).digest(), "big") >> 1
    return torch.Generator().manual_seed(seed)


class CachedStream:
    """Shuffled batches over a cached layer: epoch e visits the kept rows in a permutation seeded by (seed, e).

    Step s of epoch e is rows perm_e[i·B:(i+1)·B] with i = s mod steps_per_epoch (the incomplete last
    batch of an epoch is dropped). `epochs=None` repeats forever. BOS rows are left out by default
    (their residual norm is an outlier that dominates the reconstruction loss).
    """

    def __init__(
        self,
        cache: CachedActivations,
        batch_size: int,
        seed: int = 0,
        epochs: int | None = 1,
        exclude_bos: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cache, self.batch_size, self.seed, self.epochs, self.device = cache, batch_size, seed, epochs, torch.device(device)
        self.d_in = cache.d_in
        self.keep = _keep_rows(cache.tokens, cache.bos_id, exclude_bos)
        self.steps_per_epoch = len(self.keep) // batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"the cache holds {len(self.keep)} usable rows, fewer than one batch of {batch_size}; cache more tokens or use a smaller batch"
            )

    def batches(self, start_step: int = 0) -> Iterator[Tensor]:
        step = start_step
        while self.epochs is None or step < self.epochs * self.steps_per_epoch:
            epoch, i = divmod(step, self.steps_per_epoch)
            perm = self.keep[torch.randperm(len(self.keep), generator=_generator(self.seed, epoch))]
            for j in range(i, self.steps_per_epoch):
                yield self.cache.rows(perm[j * self.batch_size : (j + 1) * self.batch_size]).to(self.device)
                step += 1


class LiveStream:
    """Shuffled batches computed by the model on the fly, through a buffer of about `buffer_tokens` rows.

    Each epoch visits the windows in a seeded permutation; round r of an epoch runs the model on the
    next buffer's worth of windows and shuffles their kept rows (seeded by (seed, epoch, r)); batches
    are cut from the concatenation of rounds. Which rows a step gets is known from the tokens alone,
    so `batches(s)` starts at the round holding step s without replaying earlier ones. Memory holds at
    most one round plus one batch of leftovers. (A `control` model with `fresh` noise draws new noise
    on every pass, so only its cached activations resume bit-exactly.)
    """

    def __init__(
        self,
        loaded: LoadedModel,
        windows: Tensor,
        layer: int,
        batch_size: int,
        seed: int = 0,
        buffer_tokens: int = 2**16,
        epochs: int | None = 1,
        exclude_bos: bool = True,
        model_batch: int = 32,
    ) -> None:
        check_layers([layer], loaded.n_layers)
        self.loaded, self.windows, self.layer, self.batch_size, self.seed = loaded, windows.cpu(), layer, batch_size, seed
        self.epochs, self.exclude_bos, self.model_batch = epochs, exclude_bos, model_batch
        self.d_in = loaded.d_model
        n, t = windows.shape
        self.round_windows = max(1, buffer_tokens // t)
        self.rounds_per_epoch = -(-n // self.round_windows)
        self.rows_per_window = (windows != loaded.bos_id).sum(1) if exclude_bos and loaded.bos_id is not None else torch.full((n,), t)
        self.rows_per_epoch = int(self.rows_per_window.sum())
        self.steps_per_epoch = self.rows_per_epoch // batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"the windows give {self.rows_per_epoch} usable rows, fewer than one batch of {batch_size}; use more tokens or a smaller batch"
            )

    def _window_order(self, epoch: int) -> Tensor:
        return torch.randperm(self.windows.shape[0], generator=_generator(self.seed, epoch))

    def _round_rows(self, epoch: int, order: Tensor, r: int) -> Tensor:
        """Kept activation rows of round r of an epoch, shuffled (seeded) as they are written: one
        buffer of the round's size plus one model batch is all the memory this takes."""
        idx = order[r * self.round_windows : (r + 1) * self.round_windows]
        ids = self.windows[idx]
        device = next(self.loaded.model.parameters()).device
        n_rows = int(self.rows_per_window[idx].sum())
        dest = torch.randperm(n_rows, generator=_generator(self.seed, epoch, r)).to(device)
        out = torch.empty(n_rows, self.d_in, device=device)
        k = 0
        for b in range(0, ids.shape[0], self.model_batch):
            chunk = ids[b : b + self.model_batch]
            acts = capture_residuals(self.loaded.model, chunk.to(device), [self.layer])[self.layer]
            keep = _keep_rows(chunk, self.loaded.bos_id, self.exclude_bos).to(device)
            kept = acts.reshape(-1, self.d_in)[keep]
            out[dest[k : k + kept.shape[0]]] = kept.float()
            k += kept.shape[0]
        check = SpreadCheck(self.loaded, self.layer)
        check.update(out, f"round {r} of epoch {epoch}")
        check.finish()
        return out

    def batches(self, start_step: int = 0) -> Iterator[Tensor]:
        B = self.batch_size
        step = start_step
        while self.epochs is None or step < self.epochs * self.steps_per_epoch:
            epoch, i = divmod(step, self.steps_per_epoch)
            order = self._window_order(epoch)
            sizes = self.rows_per_window[order]
            bounds = [0] + [int(sizes[: (r + 1) * self.round_windows].sum()) for r in range(self.rounds_per_epoch)]
            skip = i * B  # rows of this epoch that come before the start step
            carry = None
            for r in range(self.rounds_per_epoch):
                if bounds[r + 1] <= skip:  # the whole round lies before the start step
                    continue
                rows = self._round_rows(epoch, order, r)
                if bounds[r] < skip:
                    rows = rows[skip - bounds[r] :]
                if carry is not None:
                    rows = torch.cat([carry, rows])
                n_full = rows.shape[0] // B
                for j in range(n_full):
                    yield rows[j * B : (j + 1) * B].clone()  # a copy, so a held batch does not pin the buffer
                    step += 1
                carry = rows[n_full * B :].clone()  # batches run across rounds; the epoch's incomplete tail is dropped
                del rows


def cache_activations(cfg: ActivationsConfig) -> tuple[Path, CacheReport]:
    """Fill the cache of `nullsae activations`: cfg's model variant at its layers over its token split
    (after checking the disk can hold it); the cache folder and what was cached or written."""
    from nullsae.data import token_windows
    from nullsae.devices import resolve_device
    from nullsae.models import load_model, make_variant
    from nullsae.resources import check_disk

    loaded = load_model(cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    layers = check_layers(cfg.layers, loaded.n_layers)
    data = DataSlice(
        source=cfg.data,
        split=cfg.split,
        seed=cfg.data_seed,
        window=cfg.window,
        n_windows=-(-cfg.tokens // cfg.window),
        text_field=cfg.text_field,
    )
    windows = token_windows(
        loaded.tokenizer,
        loaded.bos_id,
        data.window,
        data.n_windows,
        source=data.source,
        split=data.split,
        seed=data.seed,
        text_field=data.text_field,
    )
    v = cfg.null
    variant, manifest = make_variant(
        loaded, cfg.variant, seed=v.seed, keep_norms=v.keep_norms, noise=v.control_noise, sigma=v.control_sigma
    )
    variant.model.to(resolve_device(cfg.device))
    directory = cache_dir(loaded.name, manifest.slug, data, root=cfg.cache_dir)
    itemsize = 4 if cfg.dtype == "float32" else 2
    check_disk(
        windows.numel() * loaded.d_model * itemsize * len(layers),
        directory,
        f"caching {len(layers)} layers of {windows.numel():,} tokens",
        "lower --tokens, cache fewer --layers at once, use --dtype bfloat16, or give another --cache-dir",
    )
    manifest.write(directory / "manifest.json")
    return directory, fill_cache(variant, windows, layers, directory, batch_size=cfg.batch_size, dtype=cfg.dtype)
