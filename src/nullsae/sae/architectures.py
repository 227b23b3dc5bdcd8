"""SAE architectures of docs/spec.md#architectures behind one interface: encode / decode / forward -> SAEOutput.

Encoding is z = f(W_enc (x − b_dec) + b_enc), decoding x̂ = W_dec z + b_dec, with W_enc and W_dec both
stored as (m, d). The reconstruction loss is the batch FVU for every architecture (docs/spec.md#reconstruction).
TopK, BatchTopK, Matryoshka and JumpReLU run on a sparse path (the selected entries' values and
indices), hand-written because no library gives an encoder whose backward touches only the selected
latents; that is where their speed comes from.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nullsae.sae.config import SAEConfig


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


Select = Callable[[Tensor], tuple[Tensor, Tensor]]


class _SparseEncode(torch.autograd.Function):
    """vals = ReLU(pre[rows, cols]) for the entries `select` keeps of pre = W_enc (x − b_dec) + b_enc.

    Hand-written because autograd through a top-k scatters a dense (B, m) gradient and then pays two
    dense (B, m, d) matmuls; here the backward costs O(nnz · d). When x needs no gradient, b_dec's
    gradient is −(Σ_rows g) W_enc, an (m)·(m, d) product instead of a per-row gather.
    """

    @staticmethod
    def forward(ctx, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, select: Select):  # type: ignore[override]
        xc = x - b_dec
        pre = (xc @ W_enc.t()).add_(b_enc)  # faster than addmm, which first copies the bias into all B·m outputs
        rows, cols = select(pre)
        vals = pre.view(-1).index_select(0, rows * pre.shape[1] + cols).relu_()
        ctx.save_for_backward(xc, W_enc, rows, cols, vals)
        ctx.mark_non_differentiable(rows, cols)
        return vals, rows, cols

    @staticmethod
    def backward(ctx, g_vals: Tensor, _g_rows: Tensor | None, _g_cols: Tensor | None):  # type: ignore[override]
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
    def forward(ctx, vals: Tensor, rows: Tensor, cols: Tensor, W_dec: Tensor, batch: int):  # type: ignore[override]
        ctx.save_for_backward(vals, rows, cols, W_dec)
        return _gather_sum(rows, cols, vals, W_dec, batch)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        vals, rows, cols, W_dec = ctx.saved_tensors
        g_vals = _sampled_dot(rows, cols, g, W_dec) if ctx.needs_input_grad[0] else None
        g_W = _gather_sum(cols, rows, vals, g, W_dec.shape[0]) if ctx.needs_input_grad[3] else None
        return g_vals, None, None, g_W, None


def row_topk(k: int) -> Select:
    """Keep the k largest pre-activations of every row (TopK)."""

    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        idx = pre.topk(k, dim=1, sorted=False).indices
        return torch.arange(pre.shape[0], device=pre.device).repeat_interleave(k), idx.reshape(-1)

    return select


def batch_topk(n_keep: int) -> Select:
    """Keep the n_keep largest pre-activations of the whole batch (BatchTopK).

    Exact and cheaper than a top-k over all B·m entries: candidates are each row's top
    4·n_keep/B; a row whose smallest candidate reaches the batch threshold may hold more winners,
    so all of its entries join the candidates (adding candidates only raises the threshold, so one
    pass suffices).
    """

    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        B, m = pre.shape
        keep = min(n_keep, pre.numel())
        per_row = min(m, 4 * -(-keep // B))
        cand_vals, cand_idx = pre.topk(per_row, dim=1, sorted=False)
        row_ids = torch.arange(B, device=pre.device)
        threshold = cand_vals.reshape(-1).topk(min(keep, cand_vals.numel()), sorted=False).values.min()
        full = cand_vals.min(1).values >= threshold if per_row < m else torch.zeros(B, dtype=torch.bool, device=pre.device)
        part = ~full
        vals = torch.cat([cand_vals[part].reshape(-1), pre[full].reshape(-1)])
        rows = torch.cat([row_ids[part].repeat_interleave(per_row), row_ids[full].repeat_interleave(m)])
        cols = torch.cat([cand_idx[part].reshape(-1), torch.arange(m, device=pre.device).repeat(int(full.sum()))])
        pos = vals.topk(keep, sorted=False).indices
        return rows[pos], cols[pos]

    return select


class _JumpReLU(torch.autograd.Function):
    """z = pre·H(pre − θ) with the straight-through pseudo-derivative for θ (Rajamanoharan et al.).

    Elementwise over the selected entries of the code, θ gathered per entry (θ[cols]); autograd sums
    the per-entry θ-gradients back onto each latent.
    """

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: Tensor):  # type: ignore[override]
        ctx.save_for_backward(pre, theta, eps)
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        pre, theta, eps = ctx.saved_tensors
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        g_pre = g * (pre > theta)
        return g_pre, -(theta / eps) * g * window, None


class _Step(torch.autograd.Function):
    """H(pre − θ), whose θ-gradient is the rectangle-kernel pseudo-derivative; used for the L0 penalty."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: Tensor):  # type: ignore[override]
        ctx.save_for_backward(pre, theta, eps)
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        pre, theta, eps = ctx.saved_tensors
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        return None, -(1 / eps) * g * window, None


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


class SAE(nn.Module):
    """One sparse autoencoder of any architecture in docs/spec.md#architectures, with the random-baseline options of docs/spec.md#baselines."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        m, d = cfg.n_latents, cfg.d_in
        gen = torch.Generator().manual_seed(cfg.seed)
        directions = F.normalize(torch.randn(m, d, generator=gen), dim=1)  # iso: uniform on the sphere
        self.W_enc = nn.Parameter(directions.clone())
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.W_dec = nn.Parameter(directions.clone())
        self.b_dec = nn.Parameter(torch.zeros(d))
        if cfg.arch == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((m,), -3.0))
            self.register_buffer("eps", torch.tensor(cfg.jumprelu_bandwidth))
        if cfg.arch in ("batchtopk", "matryoshka"):
            self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet
        self.register_buffer("sparsity_coef", torch.tensor(cfg.l1_coef if cfg.arch == "relu" else cfg.l0_penalty_coef))
        self.register_buffer("W_dec_init", directions.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self._apply_freezing()

    # ----- initialisation -------------------------------------------------------------------
    def _apply_freezing(self) -> None:
        self.W_dec.requires_grad_(self.cfg.baseline != "frozen-decoder")
        self.W_enc.requires_grad_(self.cfg.baseline != "frozen-encoder")

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init from the first batch (once): b_dec = geometric median; `cov` directions; θ."""
        if bool(self.initialized):
            return
        cfg = self.cfg
        x = x.to(self.W_dec.dtype)
        self.b_dec.copy_(geometric_median(x))
        if cfg.init_kind == "cov":
            xc = x - x.mean(0)
            cov = xc.T @ xc / max(1, x.shape[0] - 1)
            evals, evecs = torch.linalg.eigh(cov.double())
            sqrt_cov = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
            gen = torch.Generator().manual_seed(cfg.seed)
            g = torch.randn(cfg.n_latents, cfg.d_in, generator=gen, dtype=torch.float64).to(x.device) @ sqrt_cov.T
            directions = F.normalize(g.to(x.dtype), dim=1)
            self.W_dec.copy_(directions)
            self.W_enc.copy_(directions)
            self.W_dec_init.copy_(directions)
        if cfg.arch == "jumprelu":  # θ first, so that the gain below sees the ~k latents that will fire
            scale = (x - self.b_dec).norm(dim=1).pow(2).mean().sqrt()
            self.eps.fill_(cfg.jumprelu_bandwidth * float(scale))
            pre = torch.relu(self._pre(x))
            q = torch.quantile(pre.flatten()[:1_000_000], 1 - min(1.0, cfg.k / cfg.n_latents))
            self.log_threshold.fill_(float(torch.log(q.clamp_min(float(self.eps)))))
        # Scale the encoder so the initial reconstruction has the data's scale (least squares):
        # with correlated (`cov`) directions the k active latents add up and would overshoot ~k-fold.
        # JumpReLU's θ scales with it, keeping the same ~k latents active: a gain fitted with every
        # positive latent firing would shrink pre-activations several-fold, and b_enc's Adam steps
        # (absolute) would then outrun θ's (relative, on log θ).
        recon = self.encode(x) @ self.W_dec
        gain = (recon * (x - self.b_dec)).sum() / recon.pow(2).sum().clamp_min(1e-30)
        if torch.isfinite(gain) and gain > 0:
            self.W_enc.mul_(gain)
            self.b_enc.mul_(gain)
            if cfg.arch == "jumprelu":
                self.log_threshold.add_(torch.log(gain))
        self.initialized.fill_(True)

    # ----- encode / decode ------------------------------------------------------------------
    def _pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.t())

    def _selector(self) -> Select | None:
        """How the sparse architectures pick their entries (None: relu, the dense architecture)."""
        cfg = self.cfg
        if cfg.arch == "jumprelu":
            # every entry z can depend on: above θ, or within the STE window below it
            low = self.log_threshold.detach().exp() - self.eps / 2
            return lambda pre: (pre.clamp_min(0) > low).nonzero(as_tuple=True)
        if cfg.arch == "topk":
            return row_topk(cfg.k)
        if cfg.arch in ("batchtopk", "matryoshka"):
            if self.training or float(self.threshold) < 0:
                return lambda pre: batch_topk(cfg.k * pre.shape[0])(pre)
            theta = float(self.threshold)
            return lambda pre: (pre > theta).nonzero(as_tuple=True)  # inference: the learned threshold
        return None

    def _select_entries(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(ReLU(pre) at the selected entries, rows, cols)."""
        select = self._selector()
        if select is None:
            raise ValueError(f"{self.cfg.arch} SAEs have a dense code; use encode()")
        return _SparseEncode.apply(x, self.b_dec, self.W_enc, self.b_enc, select)

    def _thresholds(self, cols: Tensor) -> Tensor:
        """θ of each selected entry's latent (differentiable: gradients flow back to log_threshold)."""
        return self.log_threshold.exp().index_select(0, cols)

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(vals, rows, cols): the entries of the code of a sparse architecture (zeros possible)."""
        vals, rows, cols = self._select_entries(x)
        if self.cfg.arch == "jumprelu":
            vals = _JumpReLU.apply(vals, self._thresholds(cols), self.eps)
        return vals, rows, cols

    def encode(self, x: Tensor) -> Tensor:
        """Dense (B, m) latent code; batchtopk/matryoshka use the inference threshold in eval mode."""
        if self._selector() is not None:
            vals, rows, cols = self.encode_sparse(x)
            return x.new_zeros(x.shape[0], self.cfg.n_latents).index_put_((rows, cols), vals)
        return torch.relu(self._pre(x))

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    # ----- forward with loss ----------------------------------------------------------------
    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the loss; `dead_mask` (m,) enables AuxK for topk-family SAEs."""
        if self._selector() is not None:
            return self._forward_sparse(x, dead_mask)
        z = self.encode(x)
        recon = self.decode(z)
        loss = fvu(x, recon)
        active = z > 0
        terms = {"fvu": loss.detach(), "l0": active.sum(1).float().mean()}
        total = (x - x.mean(0, keepdim=True)).pow(2).sum(1).mean()
        # λ Σ_j |z_j| ‖W_dec,j‖, normalised by the same total variance as the FVU term
        sparsity = (z.abs() * self.W_dec.norm(dim=1)).sum(1).mean() / total
        terms["l1"] = sparsity.detach()
        loss = loss + self.sparsity_coef * sparsity
        return SAEOutput(recon=recon, loss=loss, terms=terms, fired=active.any(0), dense=z)

    def _forward_sparse(self, x: Tensor, dead_mask: Tensor | None) -> SAEOutput:
        cfg, batch = self.cfg, x.shape[0]
        pre_vals, rows, cols = self._select_entries(x)
        theta = self._thresholds(cols) if cfg.arch == "jumprelu" else None  # gathered once, used twice
        vals = _JumpReLU.apply(pre_vals, theta, self.eps) if theta is not None else pre_vals
        recon = _SparseDecode.apply(vals, rows, cols, self.W_dec, batch) + self.b_dec
        loss = fvu(x, recon)
        positive = vals > 0
        terms = {"fvu": loss.detach(), "l0": positive.sum().float() / batch}
        if cfg.arch == "jumprelu":  # L0 penalty with the rectangle-kernel pseudo-derivative for θ
            l0 = _Step.apply(pre_vals, theta, self.eps).sum() / batch
            terms["l0_penalty"] = l0.detach()
            if cfg.target_l0 is not None:
                # SAEBench / dictionary_learning form: a pull towards the target from both sides, a
                # proportional controller inside the loss that cannot wind up like an integrating one
                loss = loss + self.sparsity_coef * (l0 / cfg.target_l0 - 1).pow(2)
            else:
                loss = loss + self.sparsity_coef * l0
        if cfg.arch == "matryoshka":
            losses = []
            for end in self.group_ends()[:-1]:
                inside = cols < end
                partial = _SparseDecode.apply(vals[inside], rows[inside], cols[inside], self.W_dec, batch) + self.b_dec
                losses.append(fvu(x, partial))
            loss = torch.stack([*losses, loss]).mean()
            terms["matryoshka_fvu"] = loss.detach()
        if cfg.arch in ("batchtopk", "matryoshka") and self.training and bool(positive.any()):
            with torch.no_grad():  # running estimate of the smallest kept activation (Bussmann et al.)
                new = vals[positive].min()
                mom = cfg.threshold_momentum
                self.threshold.copy_(new if self.threshold < 0 else mom * self.threshold + (1 - mom) * new)
        loss = loss + self._auxk(x, recon, dead_mask, terms)
        fired = torch.zeros(cfg.n_latents, dtype=torch.bool, device=x.device)
        fired[cols[positive]] = True
        return SAEOutput(recon=recon, loss=loss, terms=terms, fired=fired, rows=rows, cols=cols, vals=vals)

    def group_ends(self) -> list[int]:
        """Prefix sizes of the matryoshka groups (the last one is m)."""
        ends, total = [], 0.0
        for frac in self.cfg.matryoshka_groups:
            total += frac
            ends.append(min(self.cfg.n_latents, round(total * self.cfg.n_latents)))
        ends[-1] = self.cfg.n_latents
        return ends

    def _auxk(self, x: Tensor, recon: Tensor, dead_mask: Tensor | None, terms: dict[str, Tensor]) -> Tensor:
        """AuxK (Gao et al.): dead latents reconstruct the residual; weight α, k_aux = d/2."""
        if not self.cfg.auxk or self.cfg.arch == "jumprelu" or dead_mask is None or not bool(dead_mask.any()):
            return x.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        pre = torch.addmm(self.b_enc[dead], x - self.b_dec, self.W_enc[dead].t())
        k_aux = min(self.cfg.aux_k, dead.numel())
        vals, idx = pre.topk(k_aux, dim=1, sorted=False)
        err = (x - recon).detach()
        rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(k_aux)
        aux_recon = _SparseDecode.apply(vals.relu().reshape(-1), rows, idx.reshape(-1), self.W_dec[dead], x.shape[0])
        # ‖e − ê‖² over the batch's total variance, the FVU's denominator (Gao et al.; as sparsify)
        aux = (err - aux_recon).pow(2).sum() / (x - x.mean(0, keepdim=True)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        terms["auxk"] = aux.detach()
        return self.cfg.auxk_coef * torch.nan_to_num(aux, nan=0.0)

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
        if self.cfg.baseline == "soft-frozen-decoder":
            w = F.normalize(self.W_dec, dim=1)
            w0 = F.normalize(self.W_dec_init, dim=1)
            cos = (w * w0).sum(1, keepdim=True)
            ortho = F.normalize(w - cos * w0, dim=1)
            tau = self.cfg.tau
            projected = tau * w0 + (1 - tau**2) ** 0.5 * ortho
            self.W_dec.copy_(torch.where(cos < tau, projected, w))
        if self.W_dec.requires_grad and (self.cfg.unit_norm_decoder or self.cfg.baseline == "soft-frozen-decoder"):
            self.W_dec.copy_(F.normalize(self.W_dec, dim=1))

    @torch.no_grad()
    def adapt_sparsity(self, l0: float, previous: float | None = None) -> None:
        """Multiplicative controller on λ that steers relu SAEs to `target_l0` (if set).

        `l0` is the smoothed L0 now and `previous` the one a step before. Anti-windup: λ holds while L0
        already moves towards the target, since L0 follows λ with a lag and integrating through that
        lag winds λ up until every latent dies.
        """
        target = self.cfg.target_l0
        if target is not None and self.cfg.arch == "relu":
            step = max(-1.0, min(1.0, (l0 - target) / target))
            if previous is not None and (l0 - previous) * step < 0:
                return
            self.sparsity_coef.mul_(float(torch.exp(torch.tensor(self.cfg.target_l0_rate * step))))

    @torch.no_grad()
    def decoder_drift(self) -> float:
        """Mean cos(W_dec,j, W_dec,j⁽⁰⁾): how far the decoder moved from its initialisation."""
        return float(F.cosine_similarity(self.W_dec, self.W_dec_init, dim=1).mean())
