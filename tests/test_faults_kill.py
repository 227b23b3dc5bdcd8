"""Fault suite, kills at random moments: each long command is SIGKILLed at a seeded random moment after it
has started writing, rerun to the end, and must give exactly what an uninterrupted run gives, with no
temp file left behind. (`run` with several seeds: tests/test_demo.py and the runner tests.)"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fault_helpers import CLI, env, nullsae, temp_files, tiny_folder  # noqa: F401


def _killed_at_random(args: list[str], ready: Callable[[], bool], rng: random.Random, extra: float = 3.0) -> int | None:
    """Start `nullsae ARGS`, wait until `ready()`, then SIGKILL it a random 0..`extra` s later; its exit code."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not ready() and proc.poll() is None and time.time() - t0 < 600:
        time.sleep(0.05)
    time.sleep(rng.uniform(0, extra))
    if proc.poll() is None:
        proc.kill()
    return proc.wait(60)


def _ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_synth_killed_twice_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["synth", "--steps", "12", "--curve-points", "4", "--json", "--quiet"]
    whole = json.loads(_ok(nullsae(*args)).stdout.splitlines()[-1])
    resume = tmp_path / "resume"
    rng = random.Random(18)
    for _ in range(2):
        _killed_at_random([*args, "--resume-dir", str(resume)], lambda: (resume / "trainer.pt").exists(), rng)
    again = json.loads(_ok(nullsae(*args, "--resume-dir", str(resume))).stdout.splitlines()[-1])
    assert again == whole
    assert not temp_files(resume)


def test_activations_killed_mid_fill_resume_to_the_same_cache(tiny_folder, tmp_path):
    def args(root: Path) -> list[str]:
        return [
            "activations",
            "--model",
            str(tiny_folder),
            "--layers",
            "0,2",
            "--tokens",
            "16384",
            "--window",
            "32",
            "--cache-dir",
            str(root),
        ]

    _ok(nullsae(*args(tmp_path / "whole")))
    rng = random.Random(7)
    cut = tmp_path / "cut"
    _killed_at_random(args(cut), lambda: any(cut.rglob("tokens.safetensors")), rng, extra=2.0)
    _ok(nullsae(*args(cut)))
    files = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file() and p.name != ".nullsae.lock")
    assert files and files == sorted(p.relative_to(cut) for p in cut.rglob("*") if p.is_file() and p.name != ".nullsae.lock")
    for f in files:
        assert (tmp_path / "whole" / f).read_bytes() == (cut / f).read_bytes(), f
    assert not temp_files(cut)


@pytest.mark.slow
def test_toy_sweep_killed_resumes_to_the_same_runs(tmp_path):
    def args(out: Path) -> list[str]:
        return [
            "toy",
            "superposition",
            "--seeds",
            "0",
            "--coefs",
            "0.01",
            "0.1",
            "1.0",
            "--epochs",
            "3",
            "--samples",
            "1024",
            "--latents",
            "32",
            "--max-stack",
            "1",
            "--data",
            "inputs",
            "gaussian",
            "--out",
            str(out),
            "--json",
        ]

    _ok(nullsae(*args(tmp_path / "whole")))
    cut = tmp_path / "cut"
    _killed_at_random(args(cut), lambda: any(cut.rglob("m32-runs*.json")), random.Random(3), extra=2.0)
    _ok(nullsae(*args(cut)))
    timing = ["train_seconds"]
    whole = pd.read_csv(tmp_path / "whole" / "runs.csv").drop(columns=timing)
    assert whole.equals(pd.read_csv(cut / "runs.csv").drop(columns=timing))
    assert not temp_files(cut) and not (cut / "checkpoints").exists()


def test_autointerp_killed_resumes_to_the_same_scores(tiny_folder, tmp_path):
    import torch

    from nullsae.sae import SAE
    from nullsae.sae.config import SAEConfig
    from nullsae.sae.io import save_sae

    torch.manual_seed(0)
    save_sae(SAE(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)), tmp_path / "sae")

    def args(out: Path) -> list[str]:
        return [
            "autointerp",
            "--sae",
            str(tmp_path / "sae"),
            "--layer",
            "1",
            "--model",
            str(tiny_folder),
            "--tokens",
            "8192",
            "--n-latents-sampled",
            "8",
            "--min-examples",
            "2",
            "--window",
            "16",
            "--explainer",
            "tokens",
            "--scorers",
            "tokens",
            "--out",
            str(out),
        ]

    _ok(nullsae(*args(tmp_path / "whole")))
    cut = tmp_path / "cut"
    _killed_at_random(args(cut), lambda: (cut / "run.json").exists(), random.Random(11), extra=1.5)
    _ok(nullsae(*args(cut)))
    whole = pd.read_parquet(tmp_path / "whole" / "latents.parquet")
    assert len(whole) and whole.equals(pd.read_parquet(cut / "latents.parquet"))
    assert not temp_files(cut)
