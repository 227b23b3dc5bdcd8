"""JumpReLU SAE (Rajamanoharan et al.): z = pre·H(pre − θ_j), straight-through θ with bandwidth ε, loss FVU + λ L0 (docs/spec.md#architectures)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nullsae.sae.architectures import SAE, Entries, Select
from nullsae.sae.config import JumpReLUConfig


class _JumpReLU(torch.autograd.Function):
    """z = pre·H(pre − θ) with the straight-through pseudo-derivative for θ (Rajamanoharan et al.).

    Elementwise over the selected entries of the code, θ gathered per entry (θ[cols]); autograd sums
    the per-entry θ-gradients back onto each latent.
    """

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: Tensor):
        ctx.save_for_backward(pre, theta, eps)
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g: Tensor):
        pre, theta, eps = ctx.saved_tensors
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        g_pre = g * (pre > theta)
        return g_pre, -(theta / eps) * g * window, None


class _Step(torch.autograd.Function):
    """H(pre − θ), whose θ-gradient is the rectangle-kernel pseudo-derivative; used for the L0 penalty."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: Tensor):
        ctx.save_for_backward(pre, theta, eps)
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        pre, theta, eps = ctx.saved_tensors
        window = ((pre - theta).abs() < eps / 2).to(g.dtype)
        return None, -(1 / eps) * g * window, None


@dataclass
class _GatheredEntries(Entries):
    """Entries with each one's θ, gathered once for both the activation and the L0 penalty, so that θ's gradient
    is one sum through one gather (two gathers round differently and change training from a few steps on)."""

    theta: Tensor


class JumpReLUSAE(SAE):
    """JumpReLU with θ = exp(log_threshold); the sparse code holds every entry above θ or within the STE window below it."""

    config_class = JumpReLUConfig
    saelens_architecture = "jumprelu"
    dictionary_learning_class = "JumpReluAutoEncoder"
    eps: Tensor
    sparsity_coef: Tensor

    def __init__(self, cfg: JumpReLUConfig):
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.n_latents,), -3.0))
        self.register_buffer("eps", torch.tensor(cfg.jumprelu_bandwidth))
        self.register_buffer("sparsity_coef", torch.tensor(cfg.l0_penalty_coef))

    @torch.no_grad()
    def _init_from_data(self, x: Tensor) -> None:
        """ε from the inputs' RMS norm; θ at the k/m quantile, so that the gain fitted next sees the ~k latents that will fire.

        θ scales with the gain, keeping the same ~k latents active: a gain fitted with every positive
        latent firing would shrink pre-activations several-fold, and b_enc's Adam steps (absolute)
        would then outrun θ's (relative, on log θ).
        """
        cfg = self.cfg
        scale = (x - self.b_dec).norm(dim=1).pow(2).mean().sqrt()
        self.eps.fill_(cfg.jumprelu_bandwidth * float(scale))
        pre = torch.relu(self._pre(x))
        q = torch.quantile(pre.flatten()[:1_000_000], 1 - min(1.0, cfg.k / cfg.n_latents))
        self.log_threshold.fill_(float(torch.log(q.clamp_min(float(self.eps)))))

    def scale_code(self, gain: Tensor) -> None:
        super().scale_code(gain)
        self.log_threshold.add_(torch.log(gain))

    @torch.no_grad()
    def set_firing_bar(self, level: float) -> None:
        self.log_threshold.fill_(math.log(max(level, 1e-12)))

    def _selector(self) -> Select:
        low = self.log_threshold.detach().exp() - self.eps / 2  # above θ, or within the STE window below it
        return lambda pre: (pre.clamp_min(0) > low).nonzero(as_tuple=True)

    def _thresholds(self, cols: Tensor) -> Tensor:
        """θ of each selected entry's latent (differentiable: gradients flow back to log_threshold)."""
        return self.log_threshold.exp().index_select(0, cols)

    def _entries(self, x: Tensor) -> Entries:
        e = super()._entries(x)  # the base activation leaves the ReLU'd pre-activations
        theta = self._thresholds(e.cols)
        return _GatheredEntries(e.pre, _JumpReLU.apply(e.pre, theta, self.eps), e.rows, e.cols, theta)

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        """L0 penalty with the rectangle-kernel pseudo-derivative for θ."""
        assert isinstance(e, _GatheredEntries)
        l0 = _Step.apply(e.pre, e.theta, self.eps).sum() / x.shape[0]
        terms["l0_penalty"] = l0.detach()
        if self.cfg.target_l0 is not None:
            # SAEBench / dictionary_learning form: a pull towards the target from both sides, a
            # proportional controller inside the loss that cannot wind up like an integrating one
            return loss + self.sparsity_coef * (l0 / self.cfg.target_l0 - 1).pow(2)
        return loss + self.sparsity_coef * l0

    def to_saelens(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        architecture, tensors, extra = super().to_saelens()
        return architecture, {**tensors, "threshold": self.log_threshold.exp()}, extra

    @torch.no_grad()
    def load_saelens(self, tensors: dict[str, Tensor]) -> None:
        super().load_saelens(tensors)
        self.log_threshold.copy_(tensors["threshold"].float().clamp_min(1e-12).log())

    def saelens_tensors(self) -> dict[str, tuple[int, ...]]:
        return {**super().saelens_tensors(), "threshold": (self.cfg.n_latents,)}

    @torch.no_grad()
    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        """dictionary_learning's JumpReLU reads W_enc x + b_enc (no − b_dec), θ per latent."""
        self.load_weights(state["W_enc"].T, state["b_enc"], state["W_dec"], state["b_dec"])
        self.log_threshold.copy_(state["threshold"].float().clamp_min(1e-12).log())
        self.fold_no_input_centring()

    def dictionary_learning_tensors(self) -> dict[str, tuple[int, ...]]:
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,), "threshold": (m,)}
