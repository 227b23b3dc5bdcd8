"""Matryoshka BatchTopK SAE: the loss is the mean FVU of nested dictionary prefixes (docs/spec.md#architectures)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nullsae.sae.architectures import Entries, _SparseDecode, fvu
from nullsae.sae.archs.batchtopk import BatchTopKSAE
from nullsae.sae.config import MatryoshkaConfig


class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK whose first group_ends()[i] latents must reconstruct x on their own."""

    config_class = MatryoshkaConfig
    dictionary_learning_class = "MatryoshkaBatchTopKSAE"

    def group_ends(self) -> list[int]:
        """Prefix sizes of the matryoshka groups (the last one is m)."""
        ends, total = [], 0.0
        for frac in self.cfg.matryoshka_groups:
            total += frac
            ends.append(min(self.cfg.n_latents, round(total * self.cfg.n_latents)))
        ends[-1] = self.cfg.n_latents
        return ends

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        batch = x.shape[0]
        losses = []
        for end in self.group_ends()[:-1]:
            inside = e.cols < end
            partial = _SparseDecode.apply(e.vals[inside], e.rows[inside], e.cols[inside], self.W_dec, batch) + self.b_dec
            losses.append(fvu(x, partial))
        loss = torch.stack([*losses, loss]).mean()
        terms["matryoshka_fvu"] = loss.detach()
        return super()._loss(x, e, recon, loss, terms, dead_mask)

    @classmethod
    def dictionary_learning_fields(cls, state: dict[str, Tensor], n_latents: int) -> dict[str, Any]:
        return {"matryoshka_groups": [float(g) / n_latents for g in state["group_sizes"].tolist()]}

    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        self.load_weights(state["W_enc"].T, state["b_enc"], state["W_dec"], state["b_dec"])
        theta = float(state["threshold"]) if "threshold" in state else -1.0
        if theta < 0:
            raise ValueError("the inference threshold was never estimated; finish training the SAE")
        with torch.no_grad():
            self.threshold.fill_(theta)

    def dictionary_learning_tensors(self) -> dict[str, tuple[int, ...]]:
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)}
