"""Sparse probing on planted settings: a latent built to track the label is found and probes near-perfectly,
a random latent probes at chance; pooling over a text excludes BOS and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_editing import ENTITIES, planted_llama, planted_sae

from nullsae.errors import UserError
from nullsae.probing import (
    ProbingConfig,
    format_tables,
    pooled_features,
    probe_accuracy,
    probe_task,
    probing_metric,
    run_probing,
    top_latents,
    unit_table,
    wilson_interval,
)
from nullsae.sae import SAE, SAEConfig
from nullsae.tasks import Task, balanced_split


def _planted_features(n: int = 600, d: int = 32, m: int = 64, j: int = 7, seed: int = 0):
    """Activations with the label along one direction u, and an SAE whose latent j reads u while every
    other latent reads a random direction orthogonal to u (blind to the label)."""
    gen = torch.Generator().manual_seed(seed + 1000)  # not the SAE's init seed, whose first row would equal u
    y = torch.arange(n) % 2
    u = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
    x = torch.randn(n, d, generator=gen) + 5.0 * y[:, None] * u
    sae = SAE(SAEConfig(arch="relu", d_in=d, n_latents=m, seed=seed)).eval()
    with torch.no_grad():
        sae.W_enc.sub_((sae.W_enc @ u)[:, None] * u)
        sae.W_enc[j] = u
        sae.W_dec[j] = u
        z = sae.encode(x)
    texts = [f"t{i}" for i in range(n)]
    task = balanced_split("planted", texts, y.tolist(), "1", _task_cfg(n))
    assert task is not None
    row = {t: i for i, t in enumerate(texts)}
    tr = [row[t] for t in task.train_texts]
    te = [row[t] for t in task.test_texts]
    return task, x.numpy(), z.numpy(), tr, te


def _task_cfg(n: int):
    from nullsae.tasks import TaskConfig

    return TaskConfig(n_train=n // 4, n_test=n // 4)


def test_planted_latent_is_top1_and_probes_near_perfectly():
    task, x, z, tr, te = _planted_features()
    res = probe_task(task, x[tr], x[te], z[tr], z[te], ProbingConfig())
    assert res.latents[1] == [7]
    assert res.sae[1] >= 0.95
    assert res.raw >= 0.95
    assert set(res.sae) == {1, 2, 5, 10, 20} and set(res.random) == {1, 2, 5, 10, 20}


def test_random_latent_probes_at_chance():
    task, _, z, tr, te = _planted_features()
    y_tr, y_te = np.asarray(task.train_labels), np.asarray(task.test_labels)
    accs = [probe_accuracy(z[tr][:, [c]], y_tr, z[te][:, [c]], y_te, ProbingConfig()) for c in (3, 21, 40)]
    assert all(abs(a - 0.5) < 0.12 for a in accs), accs
    assert top_latents(z[tr], y_tr, 1).tolist() == [7]


@pytest.fixture(scope="module")
def planted():
    return planted_llama(), planted_sae()


def _color_task(n_per_class: int = 12) -> Task:
    """Texts of 2-6 entity words, all red (label 1) or all blue (label 0)."""
    rng = np.random.default_rng(0)
    red = [e for e, v in ENTITIES.items() if v["color"] == "red"]
    blue = [e for e, v in ENTITIES.items() if v["color"] == "blue"]
    texts, labels = [], []
    for label, pool in ((1, red), (0, blue)):
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(pool, size=rng.integers(2, 7))))
            labels.append(label)
    from nullsae.tasks import TaskConfig

    task = balanced_split("color", texts, labels, "red", TaskConfig(n_train=8, n_test=4, min_per_class=4))
    assert task is not None
    return task


def test_end_to_end_on_tiny_model_finds_the_planted_latent(planted):
    loaded, sae = planted
    task = _color_task()
    for pooling in ("mean", "max"):
        res = run_probing(sae, loaded, 0, [task], ProbingConfig(ks=[1, 2, 5], pooling=pooling))
        probe = res.tasks[0]
        assert probe.latents[1][0] in (0, 1)  # relu(+color) or relu(-color)
        assert probe.sae[1] == 1.0 and probe.raw == 1.0
        assert res.mean_sae[1] == 1.0


def test_pooling_covers_the_text_tokens_only(planted):
    loaded, sae = planted
    texts = ["e0 e1 e2 e3 e4", "e5", "e6 e7"]  # different lengths: padded in one batch
    emb = loaded.model.get_input_embeddings().weight.detach()
    raw, codes = pooled_features(loaded, 0, texts, {"sae": sae.encode}, ProbingConfig(batch_size=3))
    for i, t in enumerate(texts):
        ids = loaded.tokenizer(t, add_special_tokens=False)["input_ids"]
        assert torch.allclose(raw[i], emb[ids].mean(0), atol=1e-5)  # block 0 is the identity: residual = embedding
        assert torch.allclose(codes["sae"][i], sae.encode(emb[ids]).mean(0), atol=1e-5)
    raw_max, _ = pooled_features(loaded, 0, texts, {}, ProbingConfig(pooling="max"))
    assert torch.allclose(raw_max[0], emb[loaded.tokenizer(texts[0], add_special_tokens=False)["input_ids"]].max(0).values)


def test_k_larger_than_dictionary_is_one_clear_error(planted):
    loaded, sae = planted
    with pytest.raises(UserError, match="larger than the SAE's 8 latents"):
        run_probing(sae, loaded, 0, [_color_task()], ProbingConfig(ks=[20]))


def test_wilson_interval_known_values():
    """Against the closed form (Wilson 1927) at z = 1.96: 5/10, 0/10 and 10/10 correct."""
    assert wilson_interval([True] * 5 + [False] * 5) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval([False] * 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval([True] * 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_every_task_accuracy_carries_its_interval():
    task, x, z, tr, te = _planted_features()
    res = probe_task(task, x[tr], x[te], z[tr], z[te], ProbingConfig(ks=[1, 2]))
    for acc, (lo, hi), correct in [
        *((res.sae[k], res.sae_ci[k], res.correct[k]) for k in (1, 2)),
        *((res.random[k], res.random_ci[k], res.random_correct[k]) for k in (1, 2)),
        (res.raw, res.raw_ci, res.raw_correct),
    ]:
        assert lo <= acc <= hi and acc == pytest.approx(np.mean(correct)) and len(correct) == res.n_test
    assert res.sae_ci[1][0] > 0.9  # the planted latent: clearly above chance
    y_tr, y_te = np.asarray(task.train_labels), np.asarray(task.test_labels)
    blind = probe_task(task, x[tr], x[te], z[tr][:, [3]], z[te][:, [3]], ProbingConfig(ks=[1]))
    assert blind.sae_ci[1][0] < 0.5 < blind.sae_ci[1][1]  # a latent blind to the label: chance lies inside its interval
    assert probe_accuracy(z[tr][:, [3]], y_tr, z[te][:, [3]], y_te, ProbingConfig()) == pytest.approx(blind.sae[1])


def test_mean_interval_is_the_verdicts_bootstrap_of_the_same_accuracy(planted):
    """The mean's interval resamples the verdict metric's own units with its own statistic: one definition."""
    from nullsae.stats import bootstrap

    loaded, sae = planted
    tasks = [_color_task(), _color_task(10).model_copy(update={"name": "color-2"})]
    res = run_probing(sae, loaded, 0, tasks, ProbingConfig(ks=[1, 5]))
    units = unit_table(res)
    for k in (1, 5):
        terms = probing_metric(k).terms(probing_metric(k).rows(units))
        assert terms is not None
        n, stat = terms
        assert stat(np.arange(n)) == pytest.approx(res.mean_sae[k])
        ci = bootstrap(stat, n, n_boot=1000, seed=0)
        assert res.mean_sae_ci[k] == pytest.approx((ci.low, ci.high))
    assert res.mean_raw_ci[0] <= res.mean_raw <= res.mean_raw_ci[1]
    table = format_tables(res)
    assert "mean over tasks" in table and "color-2" in table and "[" in table


def test_probe_command_prints_every_accuracy_with_its_interval(tmp_path, capsys):
    """`nullsae probe` on a real tiny model and SAE: a table of accuracies with intervals; the JSON holds them."""
    import json

    from runner_helpers import tiny_model_dir

    from nullsae.cli import main
    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    model = tiny_model_dir(tmp_path / "model")
    save_sae(SAE(SAEConfig(arch="relu", d_in=32, n_latents=64, seed=0)), tmp_path / "sae")
    out = tmp_path / "probe.json"
    argv = ["probe", "--sae", str(tmp_path / "sae"), "--layer", "1", "--model", str(model), "--tasks", "topic:history", "topic:arts"]
    rc = main([*argv, "--n-train", "8", "--n-test", "6", "--ks", "1", "2", "--max-tokens", "24", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith(("topic:history", "topic:arts", "mean over tasks"))]
    assert len(rows) == 6 and all(line.count("[") >= 2 for line in rows), printed  # SAE table and ceiling/floor table
    saved = json.loads(out.read_text())
    assert set(saved["mean_sae_ci"]) == {"1", "2"} and len(saved["tasks"][0]["raw_ci"]) == 2
