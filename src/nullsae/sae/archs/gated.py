"""Gated SAE (Rajamanoharan et al. 2024a, arXiv 2404.16014; docs/spec.md#architectures), on the sparse path.

A gate path π = W_enc (x − b_dec) + b_gate picks the latents that fire (H(π)); a magnitude path
with the gate's directions, W_mag = exp(r_mag) ⊙ W_enc, sets their size:
z = H(π) · ReLU(exp(r_mag) ⊙ W_enc (x − b_dec) + b_mag). The loss is the FVU, plus λ Σ ReLU(π)‖W_dec,j‖
and the FVU of the reconstruction from ReLU(π) through a detached copy of the decoder, both over
the batch's total variance as the FVU. `b_enc` holds b_gate.

Only entries with π > 0 can be nonzero, and ReLU(π) is nonzero exactly there, so the code, the
penalty and the auxiliary reconstruction all run on those entries. At them the magnitude
pre-activation is exp(r_mag)·(π − b_gate) + b_mag; its b_gate-gradients cancel, as in the dense form.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nullsae.sae.architectures import L1SAE, Entries, Select, _SparseDecode, fvu
from nullsae.sae.config import GatedConfig


class GatedSAE(L1SAE):
    """Gated SAE with parameters r_mag and b_mag beside the shared ones; SAELens architecture `gated`."""

    config_class = GatedConfig
    saelens_architecture = "gated"

    def __init__(self, cfg: GatedConfig):
        super().__init__(cfg)
        self.r_mag = nn.Parameter(torch.zeros(cfg.n_latents))
        self.b_mag = nn.Parameter(torch.zeros(cfg.n_latents))

    @torch.no_grad()
    def _init_from_data(self, x: Tensor) -> None:
        """With a target L0, b_gate starts where about target_l0 gates per token are open (at b_gate = 0, as
        SAELens starts, half of them are, and the sparse path would start dense)."""
        if self.cfg.target_l0 is not None:
            pre = self._pre(x)
            self.b_enc.sub_(torch.quantile(pre.flatten()[:1_000_000], 1 - min(1.0, self.cfg.target_l0 / self.cfg.n_latents)))

    def _selector(self) -> Select:
        return lambda pre: (pre > 0).nonzero(as_tuple=True)

    def _activate(self, pre: Tensor, cols: Tensor) -> Tensor:
        scale = self.r_mag.exp().index_select(0, cols)
        return torch.relu(scale * (pre - self.b_enc.index_select(0, cols)) + self.b_mag.index_select(0, cols))

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        sparsity = self.l1_penalty(x, e.pre, e.cols)  # e.pre = ReLU(π) at the entries with π > 0
        via_gate = _SparseDecode.apply(e.pre, e.rows, e.cols, self.W_dec.detach(), x.shape[0]) + self.b_dec.detach()
        aux = fvu(x, via_gate)
        terms["l1"] = sparsity.detach()
        terms["gate_fvu"] = aux.detach()
        return loss + self.sparsity_coef * sparsity + aux

    def scale_code(self, gain: Tensor) -> None:
        super().scale_code(gain)
        self.b_mag.mul_(gain)

    @torch.no_grad()
    def fold_no_input_centring(self) -> None:
        shift = self.W_enc.double() @ self.b_dec.double()
        self.b_enc.add_(shift)
        self.b_mag.add_(self.r_mag.double().exp() * shift)

    def to_saelens(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        tensors = {
            "W_enc": self.W_enc.T,
            "b_gate": self.b_enc,
            "r_mag": self.r_mag,
            "b_mag": self.b_mag,
            "W_dec": self.W_dec,
            "b_dec": self.b_dec,
        }
        return "gated", tensors, {}

    @torch.no_grad()
    def load_saelens(self, tensors: dict[str, Tensor]) -> None:
        self.load_weights(tensors["W_enc"].T, tensors["b_gate"], tensors["W_dec"], tensors["b_dec"])
        self.r_mag.copy_(tensors["r_mag"].float())
        self.b_mag.copy_(tensors["b_mag"].float())

    def saelens_tensors(self) -> dict[str, tuple[int, ...]]:
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"W_enc": (d, m), "b_gate": (m,), "r_mag": (m,), "b_mag": (m,), "W_dec": (m, d), "b_dec": (d,)}
