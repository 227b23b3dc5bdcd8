"""The batched toy-SAE sweep: equal to a plain loop over runs, the Goldilocks shape on a reduced
Sharkey sweep, and mean ± s.e.m. over seeds."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from nullsae.errors import UserError
from nullsae.toy.data import ToyData, sharkey, with_controls
from nullsae.toy.sweep import (
    CPU_STACK_ACTIVATION_BYTES,
    RunResult,
    SweepConfig,
    SweepPoint,
    _fitting_stack,
    run_sweep,
    sparsity_at_ev,
    summarize,
)


def test_batched_equals_plain_loop():
    sets = []
    for seed in (0, 1):
        s = sharkey(n_samples=600, d=16, n_features=32, seed=seed)
        sets += with_controls(s.x, seed, s.features, mlp=False)
    cfg = SweepConfig(latents=[32], coefs=[0.01, 0.3], epochs=2, batch_size=64)
    batched = run_sweep(sets, cfg, progress=False)
    loop = run_sweep(sets, cfg.model_copy(update={"max_stack": 1}), progress=False)
    assert len(batched) == len(loop) == 8
    for a, b in zip(batched, loop, strict=True):
        assert (a.data, a.seed, a.coef) == (b.data, b.seed, b.coef)
        for key in ("ev", "l0", "l1", "l1_sqrt_l2", "hoyer"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-3, abs=1e-3), key
        assert (a.mmcs is None) == (a.data == "gaussian")
        if a.mmcs is not None:
            assert a.mmcs == pytest.approx(b.mmcs, abs=1e-3) and a.mcc == pytest.approx(b.mcc, abs=1e-3)


def test_reduced_sweep_has_a_goldilocks_band():
    """Few coefficients, one seed, a small Sharkey setting: a moderate c recovers the features best."""
    s = sharkey(n_samples=2000, d=32, n_features=64, seed=0)
    cfg = SweepConfig(latents=[128], coefs=[0.001, 0.1, 3.0], epochs=10, batch_size=64, lr=3e-3, mcc=False)
    runs = {r.coef: r for r in run_sweep([ToyData("inputs", 0, s.x, s.features)], cfg, progress=False)}
    low, mid, high = runs[0.001], runs[0.1], runs[3.0]
    assert low.mmcs is not None and mid.mmcs is not None and high.mmcs is not None
    assert mid.mmcs > low.mmcs + 0.08 and mid.mmcs > high.mmcs + 0.08
    assert low.ev > 0.9 and high.ev < 0.3  # too little penalty: dense and accurate; too much: dead
    assert low.l0 > mid.l0 > high.l0


def test_summarize_mean_and_sem():
    def run(seed, ev):
        return RunResult(data="inputs", seed=seed, latents=8, coef=0.1, ev=ev, l0=1, l1=1, l1_sqrt_l2=1, hoyer=0.5, mmcs=ev / 2)

    (two,) = summarize([run(0, 0.5), run(1, 0.7)])
    assert two.n_seeds == 2 and two.ev == pytest.approx(0.6)
    assert two.sem["ev"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    assert two.mmcs == pytest.approx(0.3) and two.mcc is None and "mcc" not in two.sem
    (one,) = summarize([run(0, 0.5)])
    assert one.sem["ev"] is None


@pytest.mark.parametrize("kwargs, message", [({"coefs": []}, "empty"), ({"latents": [0]}, "≥ 1"), ({"latents": []}, "non-empty")])
def test_bad_sweep_settings(kwargs, message):
    with pytest.raises(UserError, match=message):
        SweepConfig(**kwargs)


def test_nan_dataset_is_refused():
    x = torch.randn(50, 4)
    x[3, 1] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        run_sweep([ToyData("inputs", 0, x)], SweepConfig(latents=[4], coefs=[0.1], epochs=1), progress=False)


def test_sparsity_at_ev_interpolates_the_crossing():
    def point(coef, ev, s):
        return SweepPoint(data="inputs", latents=8, coef=coef, n_seeds=1, ev=ev, l0=1, l1=1, l1_sqrt_l2=s, hoyer=0.5, sem={})

    pts = [point(0.001, 0.99, 10.0), point(0.01, 0.95, 6.0), point(0.1, 0.85, 2.0), point(1.0, 0.1, 0.5)]
    (row,) = sparsity_at_ev(pts, 0.9)
    assert row["l1_sqrt_l2"] == pytest.approx(4.0)
    assert sparsity_at_ev(pts, 0.999)[0]["l1_sqrt_l2"] is None


def _small_sweep_sets() -> list[ToyData]:
    sets = []
    for seed in (0, 1):
        s = sharkey(n_samples=400, d=16, n_features=32, seed=seed)
        sets += with_controls(s.x, seed, s.features, mlp=False)
    return sets


def test_interrupted_sweep_resumes_bit_identical(tmp_path):
    """Stopped mid-way through its second batched model, a sweep reruns to the uninterrupted result."""
    sets = _small_sweep_sets()
    cfg = SweepConfig(latents=[32], coefs=[0.01, 0.3], epochs=4, batch_size=64, max_stack=4, mcc=False)
    whole = run_sweep(sets, cfg, progress=False)
    ckpt = tmp_path / "checkpoints"
    part = run_sweep(sets, cfg, progress=False, checkpoint_dir=ckpt, save_seconds=0, stop_after_epochs=6)
    assert len(part) == 4  # the first stack finished, the second stopped after 2 of 4 epochs
    (folder,) = ckpt.iterdir()
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".pt"]
    (state,) = folder.glob("*.pt")
    before = torch.load(state, weights_only=True)["seconds"]
    resumed = run_sweep(sets, cfg, progress=False, checkpoint_dir=ckpt)
    timing = {"train_seconds"}
    assert [r.model_dump(exclude=timing) for r in resumed] == [r.model_dump(exclude=timing) for r in whole]
    assert before > 0 and all(
        r.train_seconds is not None and r.train_seconds * 4 > before for r in resumed[4:]
    )  # the interrupted stack's time adds up over calls
    assert not ckpt.exists()  # a completed sweep leaves no checkpoints behind


def test_a_sweep_with_other_settings_says_it_starts_afresh(tmp_path):
    sets = _small_sweep_sets()
    cfg = SweepConfig(latents=[32], coefs=[0.01, 0.3], epochs=4, batch_size=64, max_stack=4, mcc=False)
    run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path, save_seconds=0, stop_after_epochs=1)
    (first,) = [p.name for p in tmp_path.iterdir()]
    with pytest.warns(UserWarning, match=f"unfinished work of other sweeps \\({first}\\)"):
        run_sweep(sets, cfg.model_copy(update={"lr": 2e-3}), progress=False, checkpoint_dir=tmp_path, stop_after_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path, stop_after_epochs=1)  # its own work: resumed quietly


def test_corrupt_sweep_checkpoint_is_one_clear_error(tmp_path):
    sets = _small_sweep_sets()
    cfg = SweepConfig(latents=[32], coefs=[0.01], epochs=2, batch_size=64, max_stack=4, mcc=False)
    run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path, save_seconds=0, stop_after_epochs=1)
    (state,) = tmp_path.glob("*/*.pt")
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt.*delete it"):
        run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path)


def test_cpu_stacks_stay_cache_sized_and_gpu_stacks_fill_the_memory_budget():
    """On a CPU a stack's (batch, m) activations stay within the cache-sized budget; elsewhere only memory_gb caps it."""
    cpu = SweepConfig(device="cpu")
    assert _fitting_stack(1024, 256, cpu) * 4 * cpu.batch_size * 1024 <= CPU_STACK_ACTIVATION_BYTES
    assert _fitting_stack(1024, 256, cpu) >= 21  # the SPEC sweep's 21 coefficients of one dataset fit one stack
    gpu = SweepConfig(device="cuda", memory_gb=8.0)
    assert _fitting_stack(1024, 256, gpu) > 200
    assert _fitting_stack(10**6, 256, cpu) == 1  # never below one run
