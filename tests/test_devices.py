"""`--device` resolution: auto picks CUDA only when present; a missing or unknown device is one clear error."""

from __future__ import annotations

import pytest
import torch

from nullsae.devices import resolve_device
from nullsae.errors import UserError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")


def test_unknown_device_is_a_user_error():
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(UserError, match="no CUDA GPU; use --device cpu"):
        resolve_device("cuda")
