"""Which torch device a command runs on: one resolution rule for every `--device` option."""

from __future__ import annotations

import torch

from nullsae.errors import UserError, advice


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto` (or None): CUDA when present, else CPU; any other torch device name, checked to exist."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device '{name}' was asked for but this machine has no CUDA GPU; use {advice('--device', '--device cpu', 'the cpu device')} (or auto)"
        )
    return dev
