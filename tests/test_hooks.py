"""Residual capture (early stop) and patching on tiny real models of three families."""

from __future__ import annotations

import pytest
import torch

from nullsae.errors import UserError
from nullsae.models.hooks import capture_residuals, decoder_blocks, patch_residual

IDS = torch.randint(3, 96, (2, 12), generator=torch.Generator().manual_seed(0))


def test_capture_equals_hidden_states(tiny):
    model = tiny.model
    with torch.no_grad():
        hs = model(IDS, output_hidden_states=True).hidden_states
    got = capture_residuals(model, IDS, [1, 0])
    assert sorted(got) == [0, 1]
    for layer, x in got.items():
        torch.testing.assert_close(x, hs[layer + 1])


def test_capture_stops_after_deepest_layer(tiny):
    calls = []
    blocks = decoder_blocks(tiny.model)
    handles = [b.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, b in enumerate(blocks)]
    try:
        capture_residuals(tiny.model, IDS, [0])
        assert calls == [0]
        calls.clear()
        last = capture_residuals(tiny.model, IDS, [tiny.n_layers - 1])[tiny.n_layers - 1]
        assert calls == list(range(tiny.n_layers))
        assert last.shape == (2, 12, tiny.d_model)
    finally:
        for h in handles:
            h.remove()


def test_patch_identity_and_zero(tiny):
    model = tiny.model
    with torch.no_grad():
        clean = model(IDS).logits
        with patch_residual(model, 1, lambda h: h):
            same = model(IDS).logits
        with patch_residual(model, 1, torch.zeros_like):
            zeroed = model(IDS).logits
        after = model(IDS).logits
    torch.testing.assert_close(same, clean)
    assert not torch.allclose(zeroed, clean)
    torch.testing.assert_close(after, clean)  # the hook is gone after the block


def test_layer_out_of_range(tiny):
    with pytest.raises(UserError, match="out of range"):
        capture_residuals(tiny.model, IDS, [tiny.n_layers])
    with pytest.raises(UserError, match="out of range"):
        with patch_residual(tiny.model, -1, lambda h: h):
            pass
