"""TopK SAE (Gao et al.): the k largest pre-activations of each token, ReLU; AuxK on dead latents (docs/spec.md#architectures)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from nullsae.sae.architectures import SAE, Entries, Select, _SparseDecode
from nullsae.sae.config import TopKConfig


def row_topk(k: int) -> Select:
    """Keep the k largest pre-activations of every row (TopK)."""

    def select(pre: Tensor) -> tuple[Tensor, Tensor]:
        idx = pre.topk(k, dim=1, sorted=False).indices
        return torch.arange(pre.shape[0], device=pre.device).repeat_interleave(k), idx.reshape(-1)

    return select


class TopKSAE(SAE):
    """TopK, and the base of BatchTopK and Matryoshka: AuxK lives here."""

    config_class = TopKConfig
    saelens_architecture: ClassVar[str | None] = "topk"
    dictionary_learning_class: ClassVar[str | None] = "AutoEncoderTopK"

    def _selector(self) -> Select:
        return row_topk(self.cfg.k)

    def _loss(self, x: Tensor, e: Entries, recon: Tensor, loss: Tensor, terms: dict[str, Tensor], dead_mask: Tensor | None) -> Tensor:
        return loss + self._auxk(x, recon, dead_mask, terms)

    def _auxk(self, x: Tensor, recon: Tensor, dead_mask: Tensor | None, terms: dict[str, Tensor]) -> Tensor:
        """AuxK (Gao et al.): dead latents reconstruct the residual; weight α, k_aux = d/2."""
        if not self.cfg.auxk or dead_mask is None or not bool(dead_mask.any()):
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

    def to_saelens(self) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        architecture, tensors, _ = super().to_saelens()
        return architecture, tensors, {"k": self.cfg.k}

    @torch.no_grad()
    def fold_saelens_fields(self, raw: dict[str, Any]) -> None:
        """`rescale_acts_by_decoder_norm` (SAELens reads it for TopK only): encoder row j times ‖W_dec,j‖, decoder row j over it."""
        if raw.get("rescale_acts_by_decoder_norm", False):
            norms = self.W_dec.norm(dim=1)
            self.W_enc.mul_(norms[:, None])
            self.b_enc.mul_(norms)
            self.W_dec.div_(norms[:, None])

    def to_sparsify(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """sparsify's weights and cfg.json fields (it stores TopK SAEs only)."""
        cfg = self.cfg
        tensors: dict[str, Tensor] = {"encoder.weight": self.W_enc, "encoder.bias": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        fields: dict[str, Any] = {
            "activation": "topk",
            "expansion_factor": max(1, cfg.n_latents // cfg.d_in),
            "normalize_decoder": cfg.unit_norm_decoder,
            "num_latents": cfg.n_latents,
            "k": cfg.k,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
            "d_in": cfg.d_in,
        }
        return tensors, fields

    def load_dictionary_learning(self, state: dict[str, Tensor]) -> None:
        self.load_weights(state["encoder.weight"], state["encoder.bias"], state["decoder.weight"].T, state["b_dec"])

    def dictionary_learning_tensors(self) -> dict[str, tuple[int, ...]]:
        m, d = self.cfg.n_latents, self.cfg.d_in
        return {"encoder.weight": (m, d), "encoder.bias": (m,), "decoder.weight": (d, m), "b_dec": (d,)}
