"""SAE architectures of SPEC §6 behind one interface: encode / decode / forward -> SAEOutput.

Encoding is z = f(W_enc (x − b_dec) + b_enc), decoding x̂ = W_dec z + b_dec, with W_enc and W_dec both
stored as (m, d). The reconstruction loss is the batch FVU for every architecture (SPEC §2).
TopK runs on a sparse path (top-k values and indices), hand-written because no library gives a
TopK encoder whose backward touches only the k selected latents; that is where its speed comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nullsae.sae.config import SAEConfig


@dataclass
class SAEOutput:
    """What one forward pass returns: reconstruction, latent code, loss and its terms."""

    recon: Tensor
    loss: Tensor
    terms: dict[str, Tensor]
    fired: Tensor  # (m,) bool: latents that fired on this batch; its length is m
    dense: Tensor | None = None  # (B, m) latent code, when computed densely
    acts: Tensor | None = None  # (B, k) values of the sparse code (topk path)
    indices: Tensor | None = None  # (B, k) latent ids of the sparse code
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def latents(self) -> Tensor:
        """The (B, m) latent code, densified from the sparse code when needed."""
        if self.dense is not None:
            return self.dense
        assert self.acts is not None and self.indices is not None
        z = self.acts.new_zeros(self.acts.shape[0], self.fired.shape[0])
        return z.scatter_(1, self.indices, self.acts)


def fvu(x: Tensor, recon: Tensor) -> Tensor:
    """Batch FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (SPEC §2), the training loss of every architecture."""
    total = (x - x.mean(0, keepdim=True)).pow(2).sum()
    return (x - recon).pow(2).sum() / total.clamp_min(torch.finfo(x.dtype).tiny)


class _TopKEncode(torch.autograd.Function):
    """ReLU(top-k(W_enc xc + b_enc)) whose backward costs O(B·k·d) instead of a dense O(B·m·d) matmul."""

    @staticmethod
    def forward(ctx, xc: Tensor, W_enc: Tensor, b_enc: Tensor, k: int):  # type: ignore[override]
        pre = torch.addmm(b_enc, xc, W_enc.t())
        vals, idx = pre.topk(k, dim=1, sorted=False)
        vals = vals.relu_()
        ctx.save_for_backward(xc, W_enc, idx, vals)
        ctx.m = W_enc.shape[0]
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, g_vals: Tensor, _g_idx: Tensor | None):  # type: ignore[override]
        xc, W_enc, idx, vals = ctx.saved_tensors
        g = g_vals * (vals > 0)
        g_xc = g_W = g_b = None
        if ctx.needs_input_grad[0]:
            g_xc = F.embedding_bag(idx, W_enc, per_sample_weights=g, mode="sum")
        if ctx.needs_input_grad[1]:
            g_W = torch.sparse.mm(_sparse_rows(idx, g, ctx.m), xc)
        if ctx.needs_input_grad[2]:
            g_b = g.new_zeros(ctx.m).index_add_(0, idx.reshape(-1), g.reshape(-1))
        return g_xc, g_W, g_b, None


def _sparse_rows(idx: Tensor, vals: Tensor, m: int) -> Tensor:
    """The (m, B) sparse matrix whose column b holds vals[b] at rows idx[b]."""
    rows = torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
    return torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), vals.reshape(-1), (m, idx.shape[0]), check_invariants=False)


class _SparseDecode(torch.autograd.Function):
    """Σ_j acts_j W_dec[idx_j] per row; backward by sparse products (torch's embedding_bag backward sorts)."""

    @staticmethod
    def forward(ctx, acts: Tensor, idx: Tensor, W_dec: Tensor):  # type: ignore[override]
        ctx.save_for_backward(acts, idx, W_dec)
        return F.embedding_bag(idx, W_dec, per_sample_weights=acts, mode="sum")

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        acts, idx, W_dec = ctx.saved_tensors
        g_acts = g_W = None
        if ctx.needs_input_grad[0]:
            g_acts = torch.empty_like(acts)
            for start in range(0, idx.shape[0], 1024):  # chunks bound the (rows, k, d) gather
                sl = slice(start, start + 1024)
                g_acts[sl] = torch.bmm(W_dec[idx[sl]], g[sl].unsqueeze(2)).squeeze(2)
        if ctx.needs_input_grad[2]:
            g_W = torch.sparse.mm(_sparse_rows(idx, acts, W_dec.shape[0]), g)
        return g_acts, None, g_W


class _JumpReLU(torch.autograd.Function):
    """z = pre·H(pre − θ) with the straight-through pseudo-derivative for θ (Rajamanoharan et al.)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: Tensor):  # type: ignore[override]
        ctx.save_for_backward(pre, theta, eps)
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        pre, theta, eps = ctx.saved_tensors
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        g_pre = g * (pre > theta)
        g_theta = -(theta / eps) * (g * window).sum(0)
        return g_pre, g_theta, None


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
        return None, -(1 / eps) * (g * window).sum(0), None


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
    """One sparse autoencoder of any architecture in SPEC §6, with the random-baseline options of §7."""

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
        self.register_buffer("sparsity_coef", torch.tensor(cfg.l1_coef if cfg.arch == "relu" else cfg.l0_coef))
        self.register_buffer("W_dec_init", directions.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self._apply_freezing()

    # ----- initialisation -------------------------------------------------------------------
    def _apply_freezing(self) -> None:
        self.W_dec.requires_grad_(self.cfg.baseline != "frozen-decoder")
        self.W_enc.requires_grad_(self.cfg.baseline != "frozen-encoder")

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init from the first batch: b_dec = geometric median; `cov` directions; θ."""
        cfg = self.cfg
        x = x.to(self.W_dec.dtype)
        self.b_dec.copy_(geometric_median(x))
        if cfg.init_kind == "cov":
            xc = x - x.mean(0)
            cov = xc.T @ xc / max(1, x.shape[0] - 1)
            evals, evecs = torch.linalg.eigh(cov.double())
            sqrt_cov = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
            gen = torch.Generator().manual_seed(cfg.seed)
            g = torch.randn(cfg.n_latents, cfg.d_in, generator=gen, dtype=torch.float64) @ sqrt_cov.T
            directions = F.normalize(g.to(x.dtype), dim=1)
            self.W_dec.copy_(directions)
            self.W_enc.copy_(directions)
            self.W_dec_init.copy_(directions)
        if cfg.arch == "jumprelu":
            scale = (x - self.b_dec).norm(dim=1).pow(2).mean().sqrt()
            self.eps.fill_(cfg.jumprelu_bandwidth * float(scale))
            pre = torch.relu(self._pre(x))
            q = torch.quantile(pre.flatten()[:1_000_000], 1 - min(1.0, cfg.k / cfg.n_latents))
            self.log_threshold.fill_(float(torch.log(q.clamp_min(float(self.eps)))))
        self.initialized.fill_(True)

    # ----- encode / decode ------------------------------------------------------------------
    def _pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc.t())

    def encode(self, x: Tensor) -> Tensor:
        """Dense (B, m) latent code; batchtopk/matryoshka use the inference threshold in eval mode."""
        arch = self.cfg.arch
        if arch == "topk":
            vals, idx = self._pre(x).topk(self.cfg.k, dim=1, sorted=False)
            return torch.zeros(x.shape[0], self.cfg.n_latents, dtype=x.dtype, device=x.device).scatter_(1, idx, vals.relu())
        pre = torch.relu(self._pre(x))
        if arch == "relu":
            return pre
        if arch == "jumprelu":
            return _JumpReLU.apply(pre, self.log_threshold.exp(), self.eps)
        if self.training or float(self.threshold) < 0:
            return self._batch_topk(pre)
        return pre * (pre > self.threshold)

    def _batch_topk(self, pre: Tensor) -> Tensor:
        n_keep = min(self.cfg.k * pre.shape[0], pre.numel())
        flat = pre.flatten()
        vals, idx = flat.topk(n_keep, sorted=False)
        z = torch.zeros_like(flat).scatter_(0, idx, vals).view_as(pre)
        if self.training:
            positive = vals[vals > 0]
            if positive.numel():
                with torch.no_grad():
                    new = positive.min()
                    mom = self.cfg.threshold_momentum
                    self.threshold.copy_(new if self.threshold < 0 else mom * self.threshold + (1 - mom) * new)
        return z

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    # ----- forward with loss ----------------------------------------------------------------
    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Encode, decode and compute the loss; `dead_mask` (m,) enables AuxK for topk-family SAEs."""
        cfg = self.cfg
        if cfg.arch == "topk":
            acts, idx = _TopKEncode.apply(x - self.b_dec, self.W_enc, self.b_enc, cfg.k)
            recon = _SparseDecode.apply(acts, idx, self.W_dec) + self.b_dec
            fired = torch.zeros(cfg.n_latents, dtype=torch.bool, device=x.device)
            fired[idx[acts > 0]] = True
            loss_fvu = fvu(x, recon)
            terms = {"fvu": loss_fvu.detach(), "l0": (acts > 0).sum(1).float().mean()}
            loss = loss_fvu + self._auxk(x, recon, dead_mask, terms)
            return SAEOutput(recon=recon, loss=loss, terms=terms, fired=fired, acts=acts, indices=idx)

        z = self.encode(x)
        recon = self.decode(z)
        loss_fvu = fvu(x, recon)
        active = z > 0
        terms = {"fvu": loss_fvu.detach(), "l0": active.sum(1).float().mean()}
        loss = loss_fvu
        if cfg.arch == "relu":
            total = (x - x.mean(0, keepdim=True)).pow(2).sum(1).mean()
            # λ Σ_j |z_j| ‖W_dec,j‖, normalised by the same total variance as the FVU term
            sparsity = (z.abs() * self.W_dec.norm(dim=1)).sum(1).mean() / total
            terms["l1"] = sparsity.detach()
            loss = loss + self.sparsity_coef * sparsity
        elif cfg.arch == "jumprelu":
            pre = torch.relu(self._pre(x))
            l0 = _Step.apply(pre, self.log_threshold.exp(), self.eps).sum(1).mean()
            terms["l0_penalty"] = l0.detach()
            loss = loss + self.sparsity_coef * l0
        elif cfg.arch == "matryoshka":
            losses = []
            for end in self.group_ends()[:-1]:
                partial = z[:, :end] @ self.W_dec[:end] + self.b_dec
                losses.append(fvu(x, partial))
            losses.append(loss_fvu)
            loss = torch.stack(losses).mean()
            terms["matryoshka_fvu"] = loss.detach()
        if cfg.arch in ("batchtopk", "matryoshka"):
            loss = loss + self._auxk(x, recon, dead_mask, terms)
        return SAEOutput(recon=recon, loss=loss, terms=terms, fired=active.any(0), dense=z)

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
        if not self.cfg.auxk or dead_mask is None or not bool(dead_mask.any()):
            return x.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        pre = torch.addmm(self.b_enc[dead], x - self.b_dec, self.W_enc[dead].t())
        vals, idx = pre.topk(min(self.cfg.aux_k, dead.numel()), dim=1, sorted=False)
        err = (x - recon).detach()
        aux_recon = _SparseDecode.apply(vals.relu(), idx, self.W_dec[dead])
        aux = fvu(err, aux_recon)
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
        """Renormalise decoder rows; project soft-frozen rows back into their cone (SPEC §7)."""
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
    def adapt_sparsity(self, l0: float) -> None:
        """Multiplicative controller on λ that steers relu/jumprelu SAEs to `target_l0` (if set)."""
        target = self.cfg.target_l0
        if target is not None and self.cfg.arch in ("relu", "jumprelu"):
            step = max(-1.0, min(1.0, (l0 - target) / target))
            self.sparsity_coef.mul_(float(torch.exp(torch.tensor(self.cfg.target_l0_rate * step))))

    @torch.no_grad()
    def decoder_drift(self) -> float:
        """Mean cos(W_dec,j, W_dec,j⁽⁰⁾): how far the decoder moved from its initialisation."""
        return float(F.cosine_similarity(self.W_dec, self.W_dec_init, dim=1).mean())
