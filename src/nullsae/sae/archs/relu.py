"""ReLU SAE: z = ReLU(W_enc (x − b_dec) + b_enc), loss FVU + λ Σ_j z_j ‖W_dec,j‖ (docs/spec.md#architectures); a dense code."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from nullsae.sae.architectures import L1SAE, SAEOutput, fvu
from nullsae.sae.config import ReLUConfig


class ReLUSAE(L1SAE):
    """The one dense architecture: encode and forward work on the (B, m) code."""

    config_class = ReLUConfig
    saelens_architecture: ClassVar[str | None] = "standard"
    dictionary_learning_class: ClassVar[str | None] = "AutoEncoder"

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise ValueError("relu SAEs have a dense code; use encode()")

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(self._pre(x))

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        z = self.encode(x)
        recon = self.decode(z)
        loss = fvu(x, recon)
        active = z > 0
        sparsity = self.l1_penalty(x, z)
        terms = {"fvu": loss.detach(), "l0": active.sum(1).float().mean(), "l1": sparsity.detach()}
        return SAEOutput(recon=recon, loss=loss + self.sparsity_coef * sparsity, terms=terms, fired=active.any(0), dense=z)

    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        self.load_weights(state["encoder.weight"], state["encoder.bias"], state["decoder.weight"].T, state["bias"])

    def dictionary_learning_tensors(self) -> dict[str, tuple[int, ...]]:
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"encoder.weight": (m, d), "encoder.bias": (m,), "decoder.weight": (d, m), "bias": (d,)}
