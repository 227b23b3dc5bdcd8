"""docs/spec.md#verdicts verdicts over SAE seeds, from planted per-unit tables: the four words, δ from seed noise or
the metric's default, the two-level bootstrap, and nulls whose weights equal the trained SAE's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nullsae.report.tables import ResultTables
from nullsae.report.verdicts import classify, compute_verdicts, verdict_summary
from nullsae.stats import Replicate, resolvable_difference, seed_bootstrap


def planted(trained_ev: dict[int, float], null_ev: dict[int, float], n_tok: int = 400, same_weights: bool = False) -> ResultTables:
    """One layer: a trained SAE and a frozen-decoder null per seed, with EV planted per seed on shared tokens."""
    rng = np.random.default_rng(0)
    dev = rng.gamma(2.0, 1.0, n_tok)
    rows, toks = [], []
    for seed in trained_ev:
        for baseline, ev in (("none", trained_ev[seed]), ("frozen-decoder", null_ev[seed])):
            key = f"{baseline}-{seed}"
            err = dev * (1 - ev) * rng.uniform(0.95, 1.05, n_tok)
            toks.append(pd.DataFrame({"key": key, "token": np.arange(n_tok), "sq_err": err, "sq_dev": dev, "cos": 0.9, "l1": 1.0}))
            rows.append(
                {
                    "key": key,
                    "model": "m",
                    "variant": "trained",
                    "layer": 3,
                    "arch": "topk",
                    "baseline": baseline,
                    "seed": seed,
                    "ev": 1 - err.sum() / dev.sum(),
                    "same_weights": same_weights and baseline != "none",
                }
            )
    return ResultTables(metrics=pd.DataFrame(rows), tokens=pd.concat(toks, ignore_index=True))


def ev_verdict(t: ResultTables):
    return next(v for v in compute_verdicts(t, n_boot=400) if v.metric == "ev")


def test_a_one_seed_difference_is_not_distinguished_across_seeds():
    """Seed 0 alone: the null is 0.05 below trained, tight interval → distinguishes. Over four seeds
    the difference changes sign with the seed → the two-level interval spans 0: does not distinguish."""
    trained = {0: 0.80, 1: 0.78, 2: 0.82, 3: 0.79}
    null = {0: 0.75, 1: 0.82, 2: 0.81, 3: 0.82}
    one = ev_verdict(planted({0: trained[0]}, {0: null[0]}))
    assert one.verdict == "distinguishes" and one.n_seeds == 1 and one.tolerance_source == "default" and one.tolerance == 0.01
    assert one.low > 0.04
    many = ev_verdict(planted(trained, null))
    assert many.n_seeds == 4 and many.tolerance_source == "seed noise"
    assert many.tolerance == pytest.approx(np.std(list(trained.values()), ddof=1), abs=2e-3)
    assert many.low < 0 < many.high
    assert many.verdict == "does not distinguish"
    assert many.resolvable == pytest.approx(1.96 * many.seed_sd * np.sqrt(2 / 4))
    assert many.trained == pytest.approx(np.mean(list(trained.values())), abs=2e-3)


def test_the_four_words_and_the_flag():
    seeds = [0, 1, 2]
    better = ev_verdict(planted({s: 0.8 + 0.002 * s for s in seeds}, {s: 0.7 for s in seeds}))
    assert better.verdict == "distinguishes"
    worse = ev_verdict(planted({s: 0.7 + 0.002 * s for s in seeds}, {s: 0.8 for s in seeds}))
    assert worse.verdict == "null is better"  # the null beats trained beyond δ: said in words
    equal = ev_verdict(planted({0: 0.8}, {0: 0.8}))
    assert equal.verdict == "equal within tolerance" and -0.01 < equal.low and equal.high < 0.01
    flagged = ev_verdict(planted({0: 0.8}, {0: 0.8}, same_weights=True))
    assert flagged.verdict == "not scored" and "weights equal" in flagged.warning
    assert verdict_summary([flagged]).verdict.item() == "not scored"


def test_an_ill_conditioned_ce_score_is_not_judged():
    """CE_zero − CE_clean under 0.1 nats for the null (a random model): its CE score is shown with the warning but
    gets no verdict, however far it lies from trained's; the KL score beside it is still judged."""
    rng = np.random.default_rng(1)
    rows, chunks = [], []
    for variant, gap in (("trained", 2.0), ("rerandomized", 0.01)):
        key = f"{variant}-0"
        clean = rng.uniform(3.0, 3.2, 64)
        zero, sae = clean + gap, clean + gap * (0.1 if variant == "trained" else -5.0)
        chunks.append(
            pd.DataFrame(
                {"key": key, "unit": np.arange(64), "ce_clean": clean, "ce_sae": sae, "ce_zero": zero, "kl_sae": 0.1, "kl_zero": 1.0}
            )
        )
        rows.append(dict(key=key, model="m", variant=variant, layer=3, arch="topk", baseline="none", seed=0, ce_ill_conditioned=gap < 0.1))
    verdicts = {v.metric: v for v in compute_verdicts(ResultTables(metrics=pd.DataFrame(rows), chunks=pd.concat(chunks)), n_boot=200)}
    ce = verdicts["ce_score"]
    assert ce.verdict == "not scored" and "ill-conditioned" in ce.warning and "rerandomized" in ce.warning
    assert ce.null_value > 5  # the number is there, the word is not
    assert verdicts["kl_score"].verdict == "equal within tolerance"


def test_classify_follows_spec_section_9():
    assert classify(0.05, 0.03, 0.07, +1, 0.01) == "distinguishes"
    assert classify(0.005, 0.002, 0.008, +1, 0.01) == "equal within tolerance"  # excludes 0 but below δ
    assert classify(0.02, 0.001, 0.04, +1, 0.03) == "does not distinguish"  # excludes 0, |Δ| < δ, not inside ±δ
    assert classify(-0.05, -0.07, -0.03, +1, 0.01) == "null is better"
    assert classify(-0.05, -0.07, -0.03, -1, 0.01) == "distinguishes"
    assert classify(0.0, -0.02, 0.02, +1, 0.01) == "does not distinguish"
    assert classify(float("nan"), 0, 1, +1, 0.01) == "n/a"


def test_seed_bootstrap_reduces_to_one_level_and_resamples_seeds():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 1.0, 50)
    one = seed_bootstrap([Replicate(lambda i: a[i].mean(), (50,))], n_boot=300, seed=1)
    assert one.estimate == pytest.approx(a.mean()) and one.low < a.mean() < one.high
    # seeds whose means differ: the two-level interval is at least as wide as the spread of seed means
    offsets = [-1.0, 0.0, 1.0]
    reps = [Replicate(lambda i, o=o: a[i].mean() + o, (50,)) for o in offsets]
    two = seed_bootstrap(reps, n_boot=300, seed=1)
    assert two.estimate == pytest.approx(a.mean())
    assert two.high - two.low > one.high - one.low + 0.5
    assert np.isnan(resolvable_difference(0.1, 1))
