"""Sparse probing on planted settings: a latent built to track the label is found and probes near-perfectly,
a random latent probes at chance; pooling over a text excludes BOS and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_editing import ENTITIES, planted_llama, planted_sae

from nullsae.errors import UserError
from nullsae.probing import ProbingConfig, pooled_features, probe_accuracy, probe_task, run_probing, top_latents
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
        sae.W_enc -= (sae.W_enc @ u)[:, None] * u
        sae.W_enc[j] = u
        sae.W_dec[j] = u
        z = sae.encode(x)
    texts = [f"t{i}" for i in range(n)]
    task = balanced_split("planted", texts, y.tolist(), "1", _task_cfg(n))
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
