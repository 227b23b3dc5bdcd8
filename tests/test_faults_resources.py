"""Fault suite, resource limits: a setting that cannot fit in memory or on disk is refused before anything
is allocated, in one line with the estimate and the limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fault_helpers import assert_clean_error, nullsae, tiny_folder, write_run_config  # noqa: F401

from nullsae.config import build_config
from nullsae.errors import UserError
from nullsae.experiment.grid import ModelShape, plan
from nullsae.resources import check_disk, check_memory, check_plan_memory, free_memory, sae_train_bytes
from nullsae.sae import SAE
from nullsae.sae.config import SAEConfig


def _cfg(**over):
    from runner_helpers import tiny_config

    return build_config(None, {}, base=tiny_config(Path("/nonexistent/model"), **over))


def test_a_dictionary_of_1e11_latents_is_refused_at_once():
    """The issue's example: `--sae.n-latents 100000000000` asked the allocator for terabytes."""
    cfg = _cfg(sae=dict(n_latents=100_000_000_000, k=4))
    t0 = time.time()
    with pytest.raises(
        UserError, match=r"needs about [\d,.]+ GiB but only [\d,.]+ (GiB|MiB) of available memory is left; lower --sae.n-latents"
    ):
        check_plan_memory(plan(cfg, lambda m: ModelShape(n_layers=3, d_model=576)))
    assert time.time() - t0 < 5


def test_a_live_buffer_beyond_memory_is_refused():
    cfg = _cfg(train=dict(stream="live", buffer_tokens=10**12, batch_size=256))
    with pytest.raises(UserError, match="live stream's shuffle buffer .* lower --train.buffer-tokens"):
        check_plan_memory(plan(cfg, lambda m: ModelShape(n_layers=3, d_model=32)))


def test_a_plan_that_fits_passes():
    p = plan(_cfg(), lambda m: ModelShape(n_layers=3, d_model=32))
    check_plan_memory(p)
    assert len(p.cells) > 0


def test_the_estimate_covers_the_real_parameters():
    sae = SAE(SAEConfig(arch="topk", d_in=64, n_latents=512, k=8))
    weights = sum(p.numel() * p.element_size() for p in sae.parameters())
    assert 4 * weights <= sae_train_bytes(64, 512, batch_size=256) <= 4 * weights + 3 * 256 * 512 * 4 + 4 * 4 * 512


def test_memory_and_disk_limits_name_estimate_and_limit(tmp_path):
    free = free_memory("cpu")
    assert free is not None and free[0] > 0
    with pytest.raises(UserError, match=r"a test buffer needs about .* but only .* of available memory is left; use less"):
        check_memory(10 * free[0], "a test buffer", "use less")
    check_memory(1024, "a small buffer", "use less")
    with pytest.raises(UserError, match=rf"a test cache needs about .* of disk but only .* is free under {tmp_path}; write less"):
        check_disk(2**62, tmp_path / "not" / "yet", "a test cache", "write less")


def test_run_refuses_an_oversized_sae_in_one_line_and_creates_nothing(tiny_folder, tmp_path):
    cfg = write_run_config(tmp_path / "run.yaml", tiny_folder, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    res = nullsae("run", str(cfg), "--sae.n-latents", "100000000000", "--out", str(tmp_path / "run"), "--quiet")
    assert_clean_error(res, "needs about", "GiB", "lower --sae.n-latents")
    assert not (tmp_path / "run").exists()


def test_an_evaluation_split_beyond_memory_is_refused():
    cfg = _cfg(tokens=dict(context=32, train=6144, eval=10**13, interp=2048, model_batch=16, interp_window=16))
    with pytest.raises(UserError, match="evaluation split .* in memory .* lower --tokens.eval"):
        check_plan_memory(plan(cfg, lambda m: ModelShape(n_layers=3, d_model=32)))
