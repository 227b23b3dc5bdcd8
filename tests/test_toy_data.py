"""Toy-lab inputs: Sharkey data, Gaussian control, Lomax example, word vectors, token embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

from nullsae.errors import UserError
from nullsae.toy.data import gaussian_control, load_vectors, lomax_example, sharkey, split, token_embeddings, with_controls


@pytest.fixture(scope="module")
def shark():
    return sharkey(n_samples=3000, seed=0)


def test_sharkey_follows_app_c(shark):
    assert shark.x.shape == (3000, 256) and shark.features.shape == (512, 256)
    assert torch.allclose(shark.features.norm(dim=1), torch.ones(512), atol=1e-5)
    active = (shark.coefs > 0).sum(1).float()
    assert 4.5 < float(active.mean()) < 5.5  # m = 5 expected active features
    assert float(shark.coefs.min()) >= 0 and float(shark.coefs.max()) < 1
    assert torch.allclose(shark.x, shark.coefs @ shark.features, atol=1e-5)
    freq = (shark.coefs > 0).float().mean(0)
    assert float(freq[:50].mean()) > float(freq[-50:].mean())  # frequency decays with the feature index
    again = sharkey(n_samples=3000, seed=0)
    assert torch.equal(again.x, shark.x)
    assert not torch.equal(sharkey(n_samples=100, seed=1).features, shark.features)


def test_gaussian_control_matches_scalar_moments(shark):
    g = gaussian_control(shark.x, seed=3)
    assert g.shape == shark.x.shape
    assert float(g.mean()) == pytest.approx(float(shark.x.mean()), abs=2e-3)
    assert float(g.std()) == pytest.approx(float(shark.x.std()), rel=1e-2)


def test_gaussian_control_is_bit_identical_for_any_thread_count():
    # A sweep's checkpoints are keyed by its data's bytes: a control that changed with the thread
    # count sent a resumed full sweep back to its first stack.
    x = sharkey(n_samples=10_000, seed=4).x
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gaussian_control(x, seed=4)
        torch.set_num_threads(2)
        two = gaussian_control(x, seed=4)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_with_controls_maps_features_through_the_mlp(shark):
    sets = with_controls(shark.x[:500], 0, shark.features)
    assert [s.name for s in sets] == ["inputs", "gaussian", "mlp-inputs", "mlp-gaussian"]
    assert sets[2].features is not None and sets[2].features.shape == shark.features.shape
    assert not torch.allclose(sets[2].x, sets[0].x)
    assert sets[1].features is None and sets[3].features is None


def test_lomax_example_is_heavy_tailed_and_consistent():
    ex = lomax_example(n_samples=5000, seed=0)
    assert ex.sparse_inputs.shape == (5000, 3) and ex.dense_inputs.shape == (5000, 2)
    assert torch.allclose(ex.dense_inputs, ex.sparse_inputs @ ex.projection.T, atol=1e-4)
    assert torch.allclose(ex.sparse_outputs, ex.dense_outputs @ torch.linalg.pinv(ex.projection).T, atol=1e-4)
    z = ex.sparse_inputs.abs()
    assert float(z.max()) > 50 * float(z.median())  # Lomax(1, 1): a heavy tail
    assert (ex.sparse_inputs < 0).any() and (ex.sparse_inputs > 0).any()


def test_bundled_glove_and_files(tmp_path):
    glove = load_vectors(max_vectors=500)
    assert glove.shape == (500, 50) and glove.dtype == torch.float32
    arr = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "v.npy", arr)
    assert torch.equal(load_vectors(tmp_path / "v.npy"), torch.from_numpy(arr).float())
    (tmp_path / "v.txt").write_text("the 0.1 0.2 0.3\nof -1 2 3.5\n, 1e-2 0 1\n")
    txt = load_vectors(tmp_path / "v.txt")
    assert txt.shape == (3, 3) and float(txt[1, 2]) == pytest.approx(3.5)


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros(10), "2-D"),
        (np.zeros((3, 4, 5)), "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "NaN"),
    ],
)
def test_bad_npy_vectors(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(UserError, match=message):
        load_vectors(tmp_path / "bad.npy")


def test_bad_text_vectors(tmp_path):
    (tmp_path / "ragged.txt").write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(UserError, match="line 2"):
        load_vectors(tmp_path / "ragged.txt")
    (tmp_path / "nan.txt").write_text("a 1 2\nb nan 2\nc 0 0\n")
    with pytest.raises(UserError, match="NaN"):
        load_vectors(tmp_path / "nan.txt")
    with pytest.raises(UserError, match="not found"):
        load_vectors(tmp_path / "missing.npy")


def test_token_embeddings_of_variants():
    loaded = tiny_model("llama")
    mats = token_embeddings(loaded, ["trained", "rerandomized", "rerandomized-excl-emb"])
    trained = loaded.model.get_input_embeddings().weight
    assert torch.equal(mats["trained"], trained)
    assert torch.equal(mats["rerandomized-excl-emb"], trained)
    rr = mats["rerandomized"]
    assert rr.shape == trained.shape and not torch.allclose(rr, trained)
    assert float(rr.std()) == pytest.approx(float(trained.std()), rel=0.1)
    with pytest.raises(UserError, match="control"):
        token_embeddings(loaded, ["control"])


def test_split_is_seeded_and_disjoint():
    x = torch.arange(100.0).unsqueeze(1).repeat(1, 2)
    tr, ev = split(x, 0.1, seed=4)
    assert ev.shape[0] == 10 and tr.shape[0] == 90
    assert set(tr[:, 0].tolist()).isdisjoint(ev[:, 0].tolist())
    assert torch.equal(split(x, 0.1, seed=4)[1], ev)
