"""Residual-stream capture that stops the forward pass early, and residual patching.

Convention: layer ℓ ∈ [0, n_layers) is the output of decoder block ℓ, i.e. the residual stream after
block ℓ, which equals `output_hidden_states[ℓ + 1]` for every layer but the last. For the last block,
Llama, GPT-NeoX and GPT-2 put the output of the final norm in `hidden_states[-1]`; capture here always
returns the raw block output (before the final norm), the same object at every depth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nullsae.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class _StopForward(Exception):
    """Raised by the hook on the deepest requested block to skip the rest of the network."""


def decoder_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder blocks: the ModuleList in the base model with num_hidden_layers entries."""
    n = int(model.config.num_hidden_layers)
    base = getattr(model, "base_model", model)
    for module in base.children():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    for module in base.modules():  # fall back to any depth (e.g. wrappers around the decoder)
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise UserError(f"could not find the {n} decoder blocks of {type(model).__name__}; this architecture is not supported")


def check_layers(layers: Iterable[int], n_layers: int) -> list[int]:
    """Sorted unique layers, each in [0, n_layers); UserError otherwise."""
    out = sorted(set(int(layer) for layer in layers))
    if not out:
        raise UserError("no layer given; give at least one layer")
    bad = [layer for layer in out if not 0 <= layer < n_layers]
    if bad:
        raise UserError(f"layer {bad[0]} is out of range; this model has layers 0..{n_layers - 1}")
    return out


def _hidden(output: object) -> Tensor:
    """A decoder block's hidden states: its output, or the first element of the tuple it returns."""
    hidden = output[0] if isinstance(output, tuple) else output
    assert isinstance(hidden, Tensor)
    return hidden


def capture_residuals(
    model: PreTrainedModel, input_ids: Tensor, layers: Iterable[int], attention_mask: Tensor | None = None
) -> dict[int, Tensor]:
    """Residual stream (B, T, d) after each requested block, from one forward pass that stops after the deepest.

    Runs under no_grad (not inference mode, so the tensors can feed an SAE's autograd graph).
    """
    blocks = decoder_blocks(model)
    wanted = check_layers(layers, len(blocks))
    deepest = wanted[-1]
    out: dict[int, Tensor] = {}
    handles = []

    def make_hook(layer: int) -> Callable:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            out[layer] = _hidden(output)
            if layer == deepest:
                raise _StopForward

        return hook

    for layer in wanted:
        handles.append(blocks[layer].register_forward_hook(make_hook(layer)))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    if len(out) != len(wanted):
        raise RuntimeError(f"capture missed layers {sorted(set(wanted) - set(out))}")
    return out


@contextmanager
def patch_residual(model: PreTrainedModel, layer: int, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, replace the output of decoder block `layer` by fn(output) (same shape)."""
    blocks = decoder_blocks(model)
    check_layers([layer], len(blocks))

    def hook(_module: nn.Module, _inputs: object, output: object) -> object:
        new = fn(_hidden(output))
        if isinstance(output, tuple):
            return (new, *output[1:])
        return new

    handle = blocks[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
