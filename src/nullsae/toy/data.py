"""Inputs of the toy-model lab (Heap et al. §4, App. C; docs/spec.md#toy-models).

Sharkey toy data with known features, its Gaussian control, the 2-D Lomax picture of Fig. 4, word
vectors (bundled GloVe 50-d, any .npy or GloVe text file) and a model's token-embedding matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from nullsae.errors import UserError

if TYPE_CHECKING:
    from nullsae.models import LoadedModel


@dataclass(frozen=True)
class ToyData:
    """One dataset of a sweep: its name in results ("inputs", "mlp-gaussian", …), the seed that made it,
    the samples (N, d) and, where known, the ground-truth features (n_features, d)."""

    name: str
    seed: int
    x: Tensor
    features: Tensor | None = None


@dataclass(frozen=True)
class SharkeyData:
    """Samples x (N, d) = coefs (N, n_features) @ features (n_features, d), features unit-norm rows."""

    x: Tensor
    features: Tensor
    coefs: Tensor


def sharkey(
    n_samples: int = 10_000,
    d: int = 256,
    n_features: int = 512,
    avg_active: float = 5.0,
    decay: float = 0.99,
    seed: int = 0,
    chunk: int = 2048,
) -> SharkeyData:
    """Sharkey et al. toy data as in Heap et al. Fig. 12, vectorised over samples.

    Correlated p = Φ(A ε), decayed p_i^(λ·i), rescaled to `avg_active` expected active features,
    Bernoulli masks times U[0, 1) coefficients, summed over unit-norm random features.
    """
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(d, n_features, generator=gen)
    features = features / features.norm(dim=0, keepdim=True)
    a = torch.randn(n_features, n_features, generator=gen)  # z ~ N(0, AAᵀ) is A ε
    exponent = decay * torch.arange(n_features, dtype=torch.float32)
    normal = torch.distributions.Normal(0.0, 1.0)
    coefs = []
    for start in range(0, n_samples, chunk):
        n = min(chunk, n_samples - start)
        p = normal.cdf(torch.randn(n, n_features, generator=gen) @ a.T) ** exponent
        p = p * (avg_active / (n_features * p.mean(1, keepdim=True)))
        active = torch.bernoulli(p.clamp(0, 1), generator=gen)
        coefs.append(active * torch.rand(n, n_features, generator=gen))
    coef = torch.cat(coefs)
    return SharkeyData(coef @ features.T, features.T.contiguous(), coef)


def gaussian_control(x: Tensor, seed: int = 0) -> Tensor:
    """i.i.d. N(mean, std) samples of x's shape, with x's scalar mean and std.

    The moments are float64 NumPy reductions: torch's float32 ones split over threads and round
    differently per thread count, which would change the control (and a sweep's checkpoint key).
    """
    gen = torch.Generator().manual_seed(seed)
    a = x.detach().cpu().double().numpy()
    return torch.randn(x.shape, generator=gen) * float(a.std(ddof=1)) + float(a.mean())


@dataclass(frozen=True)
class LomaxExample:
    """Fig. 4: sparse Lomax inputs z (N, 3), projection D (2, 3), dense inputs x = z Dᵀ, MLP outputs y,
    and the sparse outputs D⁺ applied to MLP(D z)."""

    sparse_inputs: Tensor
    projection: Tensor
    dense_inputs: Tensor
    dense_outputs: Tensor
    sparse_outputs: Tensor


@torch.no_grad()
def lomax_example(
    n_samples: int = 10_000, n_sparse: int = 3, n_dense: int = 2, alpha: float = 1.0, scale: float = 1.0, seed: int = 0
) -> LomaxExample:
    """Heavy-tailed signed Lomax(α, λ) features projected to n_dense dims by a standard normal matrix, then
    passed through a random MLP (hidden 4·n_dense); the sparse view is recovered with the pseudo-inverse."""
    from nullsae.toy.mlp import random_mlp

    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n_samples, n_sparse, generator=gen, dtype=torch.float64)
    z = scale * ((1 - u).pow(-1 / alpha) - 1)  # inverse-CDF Lomax sample
    z = (z * (torch.randint(0, 2, z.shape, generator=gen) * 2 - 1)).float()
    projection = torch.randn(n_dense, n_sparse, generator=gen)
    back = torch.linalg.pinv(projection)
    mlp = random_mlp(n_dense, seed=seed)
    x = z @ projection.T
    y = mlp(x)
    return LomaxExample(z, projection, x, y, y @ back.T)


def _check_matrix(x: np.ndarray, source: str) -> Tensor:
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise UserError(
            f"{source}: expected a 2-D (n_vectors, dim) matrix with at least 2 rows and 2 columns, got shape {tuple(x.shape)}; pass a file with one vector per row"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{source}: expected numbers, got dtype {x.dtype}; save the vectors as a float array")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise UserError(f"{source}: {int(bad.sum())} NaN/inf values (first in row {row}); clean or drop those vectors")
    return torch.from_numpy(np.array(x, dtype=np.float32, copy=True))


def _read_glove_text(path: Path) -> np.ndarray:
    rows, width = [], None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if len(parts) < 2:
                continue
            if width is None:
                width = len(parts)
            if len(parts) != width:
                raise UserError(
                    f"{path}: line {lineno} has {len(parts) - 1} values, line 1 has {width - 1}; every line must be 'word v1 … vd' with the same d"
                )
            try:
                rows.append([float(v) for v in parts[1:]])
            except ValueError:
                raise UserError(
                    f"{path}: line {lineno} holds a non-number after the word; expected GloVe text format 'word v1 … vd'"
                ) from None
    if not rows:
        raise UserError(f"{path}: no vectors found; expected GloVe text format 'word v1 … vd' per line")
    return np.asarray(rows, dtype=np.float64)


def load_vectors(path: str | Path | None = None, max_vectors: int | None = None) -> Tensor:
    """Word vectors as (n, d) float32: the bundled GloVe 6B 50-d when `path` is None, else a .npy array
    or a GloVe-format text file. `max_vectors` keeps the first rows (GloVe is sorted by frequency)."""
    if path is None:
        from nullsae.assets import glove_dir

        path = glove_dir() / "glove_6B_50d_emb.npy"
    path = Path(path)
    if not path.is_file():
        raise UserError(f"vectors file {path} not found; pass an existing .npy or GloVe .txt file")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"{path}: not a plain numeric .npy array ({exc}); save it with numpy.save on a float matrix") from None
        if arr.ndim == 2 and max_vectors is not None:
            arr = arr[:max_vectors]
        return _check_matrix(np.asarray(arr), str(path))
    arr = _read_glove_text(path)
    return _check_matrix(arr[:max_vectors] if max_vectors is not None else arr, str(path))


def token_embeddings(loaded: LoadedModel, variants: list[str], seed: int = 42) -> dict[str, Tensor]:
    """The input token-embedding matrix (vocab, d) of a loaded model for each null variant (docs/spec.md#variants).

    `control` is refused: its inputs are N(0, σ²) noise, which is what the Gaussian control already is.
    """
    from nullsae.models import make_variant

    if "control" in variants:
        raise UserError(
            "the control variant feeds noise instead of embeddings; its matrix is the trained one, so drop it (the Gaussian control covers it)"
        )
    out = {}
    for variant in dict.fromkeys(variants):
        model = loaded.model if variant == "trained" else make_variant(loaded, variant, seed=seed)[0].model
        out[variant] = model.get_input_embeddings().weight.detach().float().cpu().clone()
    return out


def split(x: Tensor, eval_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded shuffle into (train, eval); eval gets round(eval_fraction · N) ≥ 1 rows."""
    n_eval = max(1, round(eval_fraction * x.shape[0]))
    if n_eval >= x.shape[0]:
        raise UserError(f"{x.shape[0]} samples are too few to hold out {eval_fraction:.0%} for evaluation; use more samples")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return x[perm[n_eval:]], x[perm[:n_eval]]


def with_controls(x: Tensor, seed: int, features: Tensor | None = None, mlp: bool = True) -> list[ToyData]:
    """The four datasets of Figs. 6–7 for one seed: the inputs, their Gaussian control, and both after a
    random MLP (the MLP also maps the ground-truth features, as in Heap et al.'s code)."""
    from nullsae.toy.mlp import apply_mlp, random_mlp

    gauss = gaussian_control(x, seed=seed)
    out = [ToyData("inputs", seed, x, features), ToyData("gaussian", seed, gauss)]
    if mlp:
        net = random_mlp(x.shape[1], seed=seed)
        mapped = None if features is None else apply_mlp(net, features)
        out += [ToyData("mlp-inputs", seed, apply_mlp(net, x), mapped), ToyData("mlp-gaussian", seed, apply_mlp(net, gauss))]
    return out
