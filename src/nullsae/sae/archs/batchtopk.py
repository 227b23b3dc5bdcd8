"""BatchTopK SAE (Bussmann et al.): the k·B largest pre-activations of the batch; at inference a learned threshold (docs/spec.md#architectures)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nullsae.sae.architectures import Entries, Select
from nullsae.sae.archs.topk import TopKSAE
from nullsae.sae.config import BatchTopKConfig


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


class BatchTopKSAE(TopKSAE):
    """BatchTopK; its `threshold` buffer is a running estimate of the smallest kept activation (< 0: not estimated yet)."""

    config_class = BatchTopKConfig
    saelens_architecture = None  # SAELens stores BatchTopK SAEs as JumpReLU; so does to_saelens
    dictionary_learning_class = "BatchTopKSAE"
    threshold: Tensor

    def __init__(self, cfg: BatchTopKConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))

    def _selector(self) -> Select:
        if self.training or float(self.threshold) < 0:
            k = self.cfg.k
            return lambda pre: batch_topk(k * pre.shape[0])(pre)
        theta = float(self.threshold)
        return lambda pre: (pre > theta).nonzero(as_tuple=True)  # inference: the learned threshold

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        positive = e.vals > 0
        if self.training and bool(positive.any()):
            with torch.no_grad():  # running estimate of the smallest kept activation (Bussmann et al.)
                new = e.vals[positive].min()
                mom = self.cfg.threshold_momentum
                self.threshold.copy_(new if self.threshold < 0 else mom * self.threshold + (1 - mom) * new)
        return super()._loss(x, e, recon, loss, terms, dead_mask)

    def scale_code(self, gain: Tensor) -> None:
        super().scale_code(gain)
        if float(self.threshold) > 0:
            self.threshold.mul_(gain)

    @torch.no_grad()
    def set_firing_bar(self, level: float) -> None:
        self.threshold.fill_(max(level, 0.0))

    def to_saelens(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        tensors = {"W_enc": self.W_enc.T, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        tensors["threshold"] = self.threshold.clamp_min(0).expand(self.cfg.n_latents)
        return "jumprelu", tensors, {}

    @torch.no_grad()
    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        super().load_dictionary_learning(state)
        theta = float(state["threshold"]) if "threshold" in state else -1.0
        if theta < 0:
            raise ValueError("the inference threshold was never estimated; finish training the SAE")
        self.threshold.fill_(theta)
