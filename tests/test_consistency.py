"""One definition per metric: on a tiny real grid with two SAE seeds and every metric family, each
verdict's `trained` value is the value the metric's own module stored for that SAE on all its data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from runner_helpers import ALL_METRICS, tiny_model_dir, tiny_run_config

from nullsae.pipeline import execute


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.mark.slow
def test_every_verdict_reads_the_metric_modules_value(tiny_dir, tmp_path):
    cfg = tiny_run_config(
        tiny_dir, layers=[2], metrics=ALL_METRICS, train=dict(batch_size=256, warmup_steps=4, checkpoint_every=3, lr=0.003, seeds=[0, 1])
    )
    res = execute(cfg, tmp_path / "run", progress=False)
    m = __import__("pandas").read_parquet(tmp_path / "run" / "metrics.parquet")
    assert sorted(m.seed.unique()) == [0, 1] and len(m) == 2 * (2 + 3)
    metrics = {v.metric for v in res.verdicts}
    expected = {"ev", "ev_standardized", "cosine", "l1", "ce_score", "kl_score", "entropy", "auroc_tokens", "probe_acc_k1", "probe_acc_k4"}
    assert expected <= metrics, expected - metrics
    for v in res.verdicts:
        ref = m[(m.variant == "trained") & (m.baseline == "none") & (m.layer == v.layer) & (m.arch == v.arch)]
        stored = float(np.mean(ref[v.metric].to_numpy(float)))
        assert v.trained == pytest.approx(stored, rel=1e-9, abs=1e-12), (v.metric, v.null)
        assert v.n_seeds == 2 and v.tolerance_source == "seed noise" and not math.isnan(v.seed_sd)
    # the tiny model answers no fact: editing is left out with the reason, not scored on noise
    assert not any(v.metric.startswith("ravel") for v in res.verdicts)
    html = res.report_path.read_text(encoding="utf-8")
    assert "editing, " in html and "facts answered right" in html
    assert "chance 0.5" in html and "seed noise" in html
    # the terminal shows the same verdicts, first: a row per metric, a column per null, one word each
    from nullsae.report.verdicts import SHORT, verdict_summary

    lines = res.text_lines()
    assert lines[1].startswith("does trained beat each null?")
    summary = verdict_summary(res.verdicts)
    nulls = list(dict.fromkeys(summary["null"]))
    assert lines[2].split() == ["metric", *nulls]
    table = {
        line[: lines[2].index(nulls[0])].strip(): line[lines[2].index(nulls[0]) :].split()
        for line in lines[3:]
        if not line.startswith("  ")
    }
    assert set(table) == set(summary.metric)
    for r in summary.itertuples():
        metric, null, verdict = str(r.metric), str(r.null), str(r.verdict)
        assert table[metric][nulls.index(null)] == SHORT.get(verdict, "mixed"), (metric, null, verdict)
