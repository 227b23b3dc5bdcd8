"""The SAE base class of docs/spec.md#architectures and the sparse kernels its architectures share.

Encoding is z = f(W_enc (x − b_dec) + b_enc), decoding x̂ = W_dec z + b_dec, with W_enc and W_dec both
stored as (m, d). The reconstruction loss is the batch FVU for every architecture (docs/spec.md#reconstruction).
Each architecture is one subclass in `nullsae.sae.archs.<arch>` (registered by its config class);
`SAE(cfg)` builds the class registered for `cfg.arch`. Sparse architectures pick entries of the
pre-activation (`_selector`) and run on a sparse path (the selected entries' values and indices),
hand-written because no library gives an encoder whose backward touches only the selected latents;
that is where their speed comes from.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nullsae.sae import baselines
from nullsae.sae.config import L1Config, SAEConfig, config_class


@dataclass
class SAEOutput:
    """What one forward pass returns: reconstruction, latent code, loss and its terms.

    The code is dense (`dense`, relu) or sparse (`rows`, `cols`, `vals`: the entries of the (B, m)
    code that can be nonzero, every other architecture); `latents` densifies either.
    """

    recon: Tensor
    loss: Tensor
    terms: dict[str, Tensor]
    fired: Tensor  # (m,) bool: latents that fired on this batch; its length is m
    dense: Tensor | None = None
    rows: Tensor | None = None
    cols: Tensor | None = None
    vals: Tensor | None = None

    @property
    def latents(self) -> Tensor:
        """The (B, m) latent code."""
        if self.dense is not None:
            return self.dense
        assert self.rows is not None and self.cols is not None and self.vals is not None
        z = self.vals.new_zeros(self.recon.shape[0], self.fired.shape[0])
        return z.index_put_((self.rows, self.cols), self.vals)


def fvu(x: Tensor, recon: Tensor) -> Tensor:
    """Batch FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (docs/spec.md#reconstruction), the training loss of every architecture."""
    total = (x - x.mean(0, keepdim=True)).pow(2).sum()
    return (x - recon).pow(2).sum() / total.clamp_min(torch.finfo(x.dtype).tiny)


def _gather_sum(target: Tensor, source: Tensor, weights: Tensor, table: Tensor, n_targets: int) -> Tensor:
    """out[t] = Σ_{e: target[e] = t} weights[e] · table[source[e]] for t < n_targets.

    A sparse-dense product written as one embedding_bag over entries grouped by target: no atomic
    scatter and no COO coalescing, which made torch.sparse.mm and index_add_ the bottleneck.
    """
    order = torch.argsort(target)
    counts = torch.bincount(target, minlength=n_targets)
    offsets = counts.cumsum(0) - counts
    return F.embedding_bag(source.index_select(0, order), table, offsets, mode="sum", per_sample_weights=weights.index_select(0, order))


Select = Callable[[Tensor], tuple[Tensor, ...]]  # (rows, cols) of the selected entries


class _SparseEncode(torch.autograd.Function):
    """vals = ReLU(pre[rows, cols]) for the entries `select` keeps of pre = W_enc (x − b_dec) + b_enc.

    Hand-written because autograd through a top-k scatters a dense (B, m) gradient and then pays two
    dense (B, m, d) matmuls; here the backward costs O(nnz · d). When x needs no gradient, b_dec's
    gradient is −(Σ_rows g) W_enc, an (m)·(m, d) product instead of a per-row gather.
    """

    @staticmethod
    def forward(ctx, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, select: Select):
        xc = x - b_dec
        pre = (xc @ W_enc.t()).add_(b_enc)  # faster than addmm, which first copies the bias into all B·m outputs
        rows, cols = select(pre)
        vals = pre.view(-1).index_select(0, rows * pre.shape[1] + cols).relu_()
        ctx.save_for_backward(xc, W_enc, rows, cols, vals)
        ctx.mark_non_differentiable(rows, cols)
        return vals, rows, cols

    @staticmethod
    def backward(ctx, g_vals: Tensor, _g_rows: Tensor | None, _g_cols: Tensor | None):
        xc, W_enc, rows, cols, vals = ctx.saved_tensors
        g = g_vals * (vals > 0)
        B, m = xc.shape[0], W_enc.shape[0]
        g_x = g_bdec = g_W = None
        g_b = g.new_zeros(m).index_add_(0, cols, g)
        if ctx.needs_input_grad[0]:
            g_x = _gather_sum(rows, cols, g, W_enc, B)
            g_bdec = -g_x.sum(0) if ctx.needs_input_grad[1] else None
        elif ctx.needs_input_grad[1]:
            g_bdec = -(g_b @ W_enc)
        if ctx.needs_input_grad[2]:
            g_W = _gather_sum(cols, rows, g, xc, m)
        return g_x, g_bdec, g_W, g_b if ctx.needs_input_grad[3] else None, None


def _sampled_dot(rows: Tensor, cols: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """out[e] = ⟨a[rows[e]], b[cols[e]]⟩: (a bᵀ) sampled at the entries, as one CSR sampled_addmm.

    torch's sampled_addmm never forms the dense product and is ~10× faster on CPU than gathering
    the nnz rows of b and reducing them.
    """
    order = torch.argsort(rows)
    counts = torch.bincount(rows, minlength=a.shape[0])
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(crow, cols.index_select(0, order), a.new_ones(rows.numel()), (a.shape[0], b.shape[0]))
        sampled = torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()
    return torch.empty_like(sampled).index_copy_(0, order, sampled)


class _SparseDecode(torch.autograd.Function):
    """x̂ = Σ vals · W_dec[cols] per row, forward and backward without dense (B, m) products."""

    @staticmethod
    def forward(ctx, vals: Tensor, rows: Tensor, cols: Tensor, W_dec: Tensor, batch: int):
        ctx.save_for_backward(vals, rows, cols, W_dec)
        return _gather_sum(rows, cols, vals, W_dec, batch)

    @staticmethod
    def backward(ctx, g: Tensor):
        vals, rows, cols, W_dec = ctx.saved_tensors
        g_vals = _sampled_dot(rows, cols, g, W_dec) if ctx.needs_input_grad[0] else None
        g_W = _gather_sum(cols, rows, vals, g, W_dec.shape[0]) if ctx.needs_input_grad[3] else None
        return g_vals, None, None, g_W, None


def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of x."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * y.norm().clamp_min(1e-8):
            return y_new
        y = y_new
    return y


@dataclass
class Entries:
    """The selected entries of a sparse code: pre-activations (ReLU'd), activations, rows and latent columns."""

    pre: Tensor
    vals: Tensor
    rows: Tensor
    cols: Tensor


class SAE(nn.Module):
    """One sparse autoencoder; `SAE(cfg)` builds the subclass registered for `cfg.arch`.

    The base owns the parameters every architecture has (W_enc, b_enc, W_dec, b_dec), the
    data-dependent initialisation, encode / decode on the sparse path, the random-baseline constraints
    (docs/spec.md#baselines) and decoder drift. A subclass sets `config_class` and overrides the hooks
    `_selector`, `_activate`, `_loss` (and `scale_code`, `_init_from_data` where it has more state);
    it maps itself to and from SAELens (`saelens_architecture`, `to_saelens`, `load_saelens`).
    """

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    saelens_architecture: ClassVar[str | None] = None  # the SAELens architecture this class reads and writes
    dictionary_learning_class: ClassVar[str | None] = None  # the dictionary_learning dict_class it reads
    _registry: ClassVar[dict[str, type[SAE]]] = {}
    W_dec_init: Tensor  # buffers
    initialized: Tensor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__:
            SAE._registry[cls.config_class.model_fields["arch"].default] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> SAE:
        target = cls
        if cls is SAE:  # copy and pickle build the subclass itself, without arguments
            target = sae_class((args[0] if args else kwargs["cfg"]).arch)
        return object.__new__(target)

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg: Any = cfg
        m, d = cfg.n_latents, cfg.d_in
        gen = torch.Generator().manual_seed(cfg.seed)
        directions = F.normalize(torch.randn(m, d, generator=gen), dim=1)  # iso: uniform on the sphere
        self.W_enc = nn.Parameter(directions.clone())
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.W_dec = nn.Parameter(directions.clone())
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("W_dec_init", directions.clone())
        self.register_buffer("initialized", torch.tensor(False))
        baselines.freeze(cfg.baseline, self.W_enc, self.W_dec)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # checkpoints of the single-class layout held a sparsity_coef buffer for every architecture
        if not hasattr(self, "sparsity_coef"):
            state_dict.pop(prefix + "sparsity_coef", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ----- initialisation -------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init from the first batch (once): b_dec = geometric median; `cov` directions; the encoder's gain."""
        if bool(self.initialized):
            return
        cfg = self.cfg
        x = x.to(self.W_dec.dtype)
        self.b_dec.copy_(geometric_median(x))
        if cfg.init_kind == "cov":
            directions = baselines.cov_directions(x, cfg.n_latents, cfg.seed)
            self.W_dec.copy_(directions)
            self.W_enc.copy_(directions)
            self.W_dec_init.copy_(directions)
        self._init_from_data(x)
        # Scale the encoder so the initial reconstruction has the data's scale (least squares):
        # with correlated (`cov`) directions the k active latents add up and would overshoot ~k-fold.
        recon = self.encode(x) @ self.W_dec
        gain = (recon * (x - self.b_dec)).sum() / recon.pow(2).sum().clamp_min(1e-30)
        if torch.isfinite(gain) and gain > 0:
            self.scale_code(gain)
        self.initialized.fill_(True)

    def _init_from_data(self, x: Tensor) -> None:
        """Architecture state set from the first batch before the gain is fitted (none by default)."""

    @torch.no_grad()
    def scale_code(self, gain: Tensor) -> None:
        """Multiply the code by `gain` keeping the same latents active (the pre-activations scale, and any bar with them)."""
        self.W_enc.mul_(gain)
        self.b_enc.mul_(gain)

    @torch.no_grad()
    def set_firing_bar(self, level: float) -> None:
        """Make every latent clear `level` to fire (here: b_enc = −level), for a free null matched to an L0 (docs/spec.md#free-nulls)."""
        self.b_enc.fill_(-level)

    # ----- encode / decode ------------------------------------------------------------------
    def _pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.t())

    def _selector(self) -> Select:
        """How this architecture picks the entries of the code that can be nonzero."""
        raise NotImplementedError(f"{self.cfg.arch} SAEs have a dense code; use encode()")

    def _activate(self, pre: Tensor, cols: Tensor) -> Tensor:
        """The code's values at the selected entries, from their ReLU'd pre-activations."""
        return pre

    def _entries(self, x: Tensor) -> Entries:
        pre, rows, cols = _SparseEncode.apply(x, self.b_dec, self.W_enc, self.b_enc, self._selector())
        return Entries(pre, self._activate(pre, cols), rows, cols)

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(vals, rows, cols): the entries of the code of a sparse architecture (zeros possible)."""
        e = self._entries(x)
        return e.vals, e.rows, e.cols

    def encode(self, x: Tensor) -> Tensor:
        """Dense (B, m) latent code (batchtopk/matryoshka use the inference threshold in eval mode)."""
        vals, rows, cols = self.encode_sparse(x)
        return x.new_zeros(x.shape[0], self.cfg.n_latents).index_put_((rows, cols), vals)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    def decode_sparse(self, vals: Tensor, rows: Tensor, cols: Tensor, batch: int) -> Tensor:
        """x̂ from the entries of a (batch, m) code without forming it."""
        return _SparseDecode.apply(vals, rows, cols, self.W_dec, batch) + self.b_dec

    # ----- forward with loss ----------------------------------------------------------------
    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the loss; `dead_mask` (m,) marks the dead latents (AuxK)."""
        batch = x.shape[0]
        e = self._entries(x)
        recon = self.decode_sparse(e.vals, e.rows, e.cols, batch)
        loss = fvu(x, recon)
        positive = e.vals > 0
        terms = {"fvu": loss.detach(), "l0": positive.sum().float() / batch}
        loss = self._loss(x, e, recon, loss, terms, dead_mask)
        fired = torch.zeros(self.cfg.n_latents, dtype=torch.bool, device=x.device)
        fired[e.cols[positive]] = True
        return SAEOutput(recon=recon, loss=loss, terms=terms, fired=fired, rows=e.rows, cols=e.cols, vals=e.vals)

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        """The training loss from the reconstruction FVU `loss`; terms it adds go into `terms` (detached)."""
        return loss

    # ----- constraints applied by the trainer around each optimiser step ---------------------
    @torch.no_grad()
    def before_step(self) -> None:
        """Remove the gradient component parallel to each unit-norm decoder row (Gao et al.)."""
        g = self.W_dec.grad
        if self.cfg.unit_norm_decoder and g is not None:
            g -= (g * self.W_dec).sum(1, keepdim=True) * self.W_dec

    @torch.no_grad()
    def after_step(self) -> None:
        """Renormalise decoder rows; project soft-frozen rows back into their cone (docs/spec.md#baselines)."""
        soft = self.cfg.baseline == "soft-frozen-decoder"
        if soft:
            self.W_dec.copy_(baselines.project_into_cone(self.W_dec, self.W_dec_init, self.cfg.tau))
        if self.W_dec.requires_grad and (self.cfg.unit_norm_decoder or soft):
            self.W_dec.copy_(F.normalize(self.W_dec, dim=1))

    @torch.no_grad()
    def adapt_sparsity(self, l0: float, previous: float | None = None) -> None:
        """Steer a sparsity coefficient from the smoothed L0 (`previous`: a step before); none by default."""

    @torch.no_grad()
    def decoder_drift(self) -> float:
        """Mean cos(W_dec,j, W_dec,j⁽⁰⁾): how far the decoder moved from its initialisation."""
        return float(F.cosine_similarity(self.W_dec, self.W_dec_init, dim=1).mean())

    # ----- formats ---------------------------------------------------------------------------
    def to_saelens(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        """(SAELens architecture, weights, extra cfg.json fields) of this SAE."""
        if self.saelens_architecture is None:
            raise ValueError(f"{self.cfg.arch} SAEs have no SAELens mapping")
        return self.saelens_architecture, {"W_enc": self.W_enc.T, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}, {}

    @torch.no_grad()
    def load_weights(self, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor) -> None:
        """Copy (m, d) encoder/decoder rows and biases in, upcast to float32; the SAE then counts as initialised."""
        self.W_enc.copy_(W_enc.float())
        self.b_enc.copy_(b_enc.float())
        self.W_dec.copy_(W_dec.float())
        self.b_dec.copy_(b_dec.float())
        self.W_dec_init.copy_(self.W_dec)
        self.initialized.fill_(True)

    @torch.no_grad()
    def load_saelens(self, tensors: dict[str, Tensor]) -> None:
        """Fill from SAELens weights (W_enc stored (d, m)); `saelens_tensors` lists what must be there."""
        self.load_weights(tensors["W_enc"].T, tensors["b_enc"], tensors["W_dec"], tensors["b_dec"])

    @torch.no_grad()
    def fold_no_input_centring(self) -> None:
        """For weights of an encoder that reads W_enc x + b_enc (no − b_dec): move W_enc b_dec into b_enc."""
        self.b_enc.add_(self.W_enc.double() @ self.b_dec.double())

    def fold_saelens_fields(self, raw: dict[str, Any]) -> None:
        """Fold the SAELens cfg.json fields only this architecture reads into the weights (none by default)."""

    @classmethod
    def dictionary_learning_fields(cls, state: dict[str, Tensor], n_latents: int) -> dict[str, Any]:
        """Config fields a dictionary_learning state dict gives beyond its trainer config (none by default)."""
        return {}

    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        """Fill from a dictionary_learning state dict (classes with a `dictionary_learning_class`)."""
        raise NotImplementedError(f"{self.cfg.arch} SAEs have no dictionary_learning mapping")

    def dictionary_learning_tensors(self) -> dict[str, tuple[int, ...]]:
        """The dictionary_learning tensors this class reads and their shapes."""
        raise NotImplementedError(f"{self.cfg.arch} SAEs have no dictionary_learning mapping")

    def saelens_tensors(self) -> dict[str, tuple[int, ...]]:
        """The SAELens tensors this class reads and their shapes."""
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)}


class L1SAE(SAE):
    """Shared by the architectures penalised by λ Σ_j a_j ‖W_dec,j‖ (normalised like the FVU), with λ steered to a target L0."""

    sparsity_coef: Tensor

    def __init__(self, cfg: L1Config):
        super().__init__(cfg)
        self.register_buffer("sparsity_coef", torch.tensor(cfg.penalty_coef))

    def l1_penalty(self, x: Tensor, acts: Tensor, cols: Tensor | None = None) -> Tensor:
        """Σ a·‖W_dec‖ per token over the batch's mean ‖x − x̄‖² (`cols`: the latents of sparse `acts`; else acts is (B, m))."""
        total = (x - x.mean(0, keepdim=True)).pow(2).sum(1).mean()
        norms = self.W_dec.norm(dim=1)
        weighted = acts * (norms if cols is None else norms.index_select(0, cols))
        return weighted.sum() / x.shape[0] / total

    @torch.no_grad()
    def adapt_sparsity(self, l0: float, previous: float | None = None) -> None:
        """Multiplicative controller on λ that steers the SAE to `target_l0` (if set).

        Anti-windup: λ holds while L0 already moves towards the target, since L0 follows λ with a lag
        and integrating through that lag winds λ up until every latent dies.
        """
        target = self.cfg.target_l0
        if target is not None:
            step = max(-1.0, min(1.0, (l0 - target) / target))
            if previous is not None and (l0 - previous) * step < 0:
                return
            self.sparsity_coef.mul_(float(torch.exp(torch.tensor(self.cfg.target_l0_rate * step))))


def sae_class(arch: str) -> type[SAE]:
    """The SAE class registered for `arch` (its module, nullsae.sae.archs.<arch>, loads on first use)."""
    config_class(arch)  # an unknown name is one UserError line
    if arch not in SAE._registry:
        importlib.import_module(f"nullsae.sae.archs.{arch}")
    return SAE._registry[arch]
