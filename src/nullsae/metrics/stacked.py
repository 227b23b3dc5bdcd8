"""docs/spec.md#reconstruction explained variance for a stack of models at once: x and x̂ of shape (..., N, d).

EV = 1 − Σ_i ‖x_i − x̂_i‖² / Σ_i ‖x_i − x̄‖², x̄ the mean over the N evaluation samples of each
stack entry; the same definition as `reconstruction.reconstruction_metrics(...).ev`, vectorised.
"""

from __future__ import annotations

from torch import Tensor


def explained_variance(x: Tensor, recon: Tensor) -> Tensor:
    """One EV per leading index: ratio of sums over samples and dimensions, centred on the set mean."""
    x, recon = x.double(), recon.double()
    sse = (x - recon).pow(2).sum((-1, -2))
    total = (x - x.mean(-2, keepdim=True)).pow(2).sum((-1, -2))
    return 1 - sse / total.clamp_min(1e-300)
