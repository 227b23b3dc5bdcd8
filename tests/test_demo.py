"""`nullsae run` / `demo` / `audit` end to end on a tiny real model: killing the run at random moments
and rerunning completes without recomputing finished cells and gives the same numbers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from runner_helpers import ALL_METRICS, TINY_PROBING, tiny_config, tiny_model_dir

from nullsae.config import parse_config
from nullsae.pipeline import execute


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _run_until(args: list[str], ready, timeout: float = 300) -> bool:
    """Start `nullsae ARGS`; SIGKILL it as soon as `ready()` holds. True when it was killed."""
    proc = subprocess.Popen([sys.executable, "-m", "nullsae.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        pytest.fail("the run neither finished nor reached the kill point in time")
    assert proc.returncode == 0, proc.communicate()[1]
    return False


def _metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet").sort_values("key").reset_index(drop=True)


@pytest.mark.slow
def test_kill_and_resume_gives_identical_numbers(tiny_dir, tmp_path):
    """Two SAE seeds and every metric family (probing and editing at one layer)."""
    cfg = tiny_config(
        tiny_dir,
        metrics=ALL_METRICS,
        probing={**TINY_PROBING, "baseline_layers_only": True},
        editing=dict(baseline_layers_only=True, n_latents_grid=[4], max_pairs=4),
    )
    cfg["train"] = {**cfg["train"], "seeds": [0, 1]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    reference = execute(parse_config(cfg), tmp_path / "ref", progress=False)
    assert {f.claim for f in reference.findings}

    out = tmp_path / "killed"
    rng = random.Random(20261121)
    n_parts = rng.randint(2, 12)
    kill_points = [
        lambda: any(out.glob("checkpoints/*/trainer.pt")),  # during SAE training, after a checkpoint
        lambda: len(list(out.glob("cells/*/*.parquet"))) >= n_parts,  # during the metrics
    ]
    killed = sum(_run_until(["run", str(path), "--out", str(out), "--quiet"], ready) for ready in kill_points)
    assert killed >= 1
    res = subprocess.run(
        [sys.executable, "-m", "nullsae.cli", "run", str(path), "--out", str(out), "--json"], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert "%|" not in res.stderr, "--json must not draw progress bars"
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["report"].endswith("report.html") and Path(summary["report"]).exists()
    pd.testing.assert_frame_equal(_metrics(tmp_path / "ref"), _metrics(out), check_exact=True)
    assert sorted(_metrics(out).seed.unique()) == [0, 1] and _metrics(out).probe_acc_k1.notna().sum() == 2 * 5
    for table in ("latents", "latent_scores"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "ref" / f"{table}.parquet"), pd.read_parquet(out / f"{table}.parquet"), check_exact=True
        )

    # a finished run recomputes nothing
    files = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    again = execute(parse_config(cfg), out, progress=False)
    assert sum(o.trained for o in again.outcomes) == 0 and sum(o.computed for o in again.outcomes) == 0
    assert files == {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}


def test_audit_checks_an_saelens_sae_against_its_baselines(tiny_dir, tmp_path, capsys):
    from nullsae.cli import main
    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    folder = save_sae(SAE(SAEConfig(arch="topk", d_in=32, n_latents=128, k=4, seed=3)), tmp_path / "sae", fmt="saelens")
    raw = json.loads((folder / "cfg.json").read_text())
    raw["hook_name"] = "blocks.2.hook_resid_post"  # SAELens names the layer it reads
    (folder / "cfg.json").write_text(json.dumps(raw))
    small = tiny_config(tiny_dir)
    flags = [
        "--models",
        str(tiny_dir),
        "--tokens.context",
        "32",
        "--tokens.train",
        "4096",
        "--tokens.eval",
        "256",
        "--tokens.interp",
        "2048",
        "--tokens.interp-window",
        "16",
        "--tokens.model-batch",
        "16",
        "--train.batch-size",
        "256",
        "--train.warmup-steps",
        "4",
        "--metrics",
        "reconstruction,latents",
        "--report.n-bootstrap",
        "100",
    ]
    for k, v in small["autointerp"]["examples"].items():
        flags += [f"--autointerp.examples.{k.replace('_', '-')}", str(v)]
    rc = main(["audit", "--sae", str(folder), "--out", str(tmp_path / "audit"), "--json", *flags])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    nulls = {v["null"] for v in summary["verdicts"]}
    assert nulls == {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}
    m = _metrics(tmp_path / "audit")
    assert set(m.baseline) == {"none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"} and set(m.layer) == {2}
    assert m.loc[m.baseline == "none", "train_steps"].item() == 0  # the audited SAE is used as given, not retrained
    # a bad SAE folder is one clear line
    assert main(["audit", "--sae", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_preset_plans_on_the_bundled_model(smollm2):
    """The demo's grid on the bundled SmolLM2: five variants at each of its layers, the baselines at one, m = 4·576."""
    from nullsae.config import build_config
    from nullsae.errors import UserError
    from nullsae.experiment import plan_run
    from nullsae.experiment.runner import RunCache

    cache = RunCache(models={"smollm2": smollm2})  # the session's copy: the bundled model is loaded once
    cfg = build_config("demo", {})
    plan = plan_run(cfg, cache=cache)
    assert plan.shapes["smollm2"].n_layers == 30 and plan.shapes["smollm2"].d_model == 576
    assert len(cfg.baseline_layers()) == 1 and len(cfg.baselines.kinds) == 3
    assert len(plan.tasks) == 5 and len(plan.cells) == 5 * len(cfg.layers) + 3
    assert {c.sae_config.n_latents for c in plan.cells} == {4 * 576}
    with pytest.raises(UserError, match="layer 30 is out of range for smollm2"):
        plan_run(build_config("demo", {"layers": "2,30", "baselines.layers": "2"}), cache=cache)
