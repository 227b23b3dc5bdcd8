"""Activation cache (safetensors shards), cached and live streams, and the `nullsae activations` command."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from nullsae.activations import CachedActivations, CachedStream, DataSlice, LiveStream, cache_dir, fill_cache
from nullsae.errors import UserError
from nullsae.models.hooks import capture_residuals


def _windows(n=10, t=8, bos=1):
    w = torch.randint(3, 96, (n, t), generator=torch.Generator().manual_seed(2))
    w[:, 0] = bos
    w[3, 4] = bos  # a document boundary inside a window
    return w


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def test_cache_roundtrip_and_token_ids(llama, tmp_path):
    w = _windows()
    rep = fill_cache(llama, w, [2, 0], tmp_path / "c", batch_size=3, shard_tokens=24, progress=False)
    assert rep.written == [0, 2] and rep.cached == [] and rep.n_tokens == 80
    ref = capture_residuals(llama.model, w, [0, 2])
    for layer in (0, 2):
        cache = CachedActivations(tmp_path / "c", layer)
        assert cache.d_in == 32 and cache.n_rows == 80 and len(cache._shards) == 4  # 3 windows of 8 per shard
        torch.testing.assert_close(cache.all(), ref[layer].reshape(-1, 32))
        assert torch.equal(cache.token_ids, w.reshape(-1))
        idx = torch.tensor([79, 0, 41, 17])
        torch.testing.assert_close(cache.rows(idx), ref[layer].reshape(-1, 32)[idx])
    again = fill_cache(llama, w, [0, 1], tmp_path / "c", progress=False)
    assert again.cached == [0] and again.written == [1]


def test_interrupted_fill_keeps_finished_shards(llama, tmp_path):
    w = _windows()
    fill_cache(llama, w, [1], tmp_path / "c", shard_tokens=24, progress=False)
    full = CachedActivations(tmp_path / "c", 1).all()
    (tmp_path / "c" / "layer_1" / "meta.json").unlink()
    (tmp_path / "c" / "layer_1" / "shard_00000006-00000009.safetensors").unlink()
    mtime = (tmp_path / "c" / "layer_1" / "shard_00000000-00000003.safetensors").stat().st_mtime_ns
    rep = fill_cache(llama, w, [1], tmp_path / "c", shard_tokens=24, progress=False)
    assert rep.written == [1]
    assert (tmp_path / "c" / "layer_1" / "shard_00000000-00000003.safetensors").stat().st_mtime_ns == mtime
    torch.testing.assert_close(CachedActivations(tmp_path / "c", 1).all(), full)
    # a rerun with another shard size after an interruption writes its own shards
    (tmp_path / "c" / "layer_1" / "meta.json").unlink()
    fill_cache(llama, w, [1], tmp_path / "c", shard_tokens=40, progress=False)
    torch.testing.assert_close(CachedActivations(tmp_path / "c", 1).all(), full)


def test_stale_cache_and_half_precision(llama, tmp_path):
    w = _windows()
    fill_cache(llama, w, [0], tmp_path / "c", dtype="bfloat16", progress=False)
    cache = CachedActivations(tmp_path / "c", 0)
    ref = capture_residuals(llama.model, w, [0])[0].reshape(-1, 32)
    torch.testing.assert_close(cache.all(), ref.bfloat16().float())
    with pytest.raises(UserError, match="other token windows"):
        fill_cache(llama, _windows() + 1, [0], tmp_path / "c", progress=False)
    with pytest.raises(UserError, match="no complete activations"):
        CachedActivations(tmp_path / "c", 2)


def test_cache_key_separates_model_variant_and_data(tmp_path):
    d1 = DataSlice(n_windows=10)
    assert cache_dir("m", "trained", d1, tmp_path) != cache_dir("m", "rerandomized-s42", d1, tmp_path)
    assert cache_dir("m", "trained", d1, tmp_path) != cache_dir("m", "trained", DataSlice(n_windows=10, split="eval"), tmp_path)
    assert cache_dir("m", "trained", d1, tmp_path) == cache_dir("m", "trained", DataSlice(n_windows=10), tmp_path)


def test_cached_stream_is_deterministic_and_resumable(llama, tmp_path):
    w = _windows()
    fill_cache(llama, w, [1], tmp_path / "c", progress=False)
    cache = CachedActivations(tmp_path / "c", 1)
    stream = CachedStream(cache, batch_size=7, seed=5, epochs=2)
    full = list(stream.batches())
    kept = 80 - 11  # 10 window-start BOS + 1 inside a window
    assert stream.steps_per_epoch == kept // 7 and len(full) == 2 * (kept // 7)
    assert all(b.shape == (7, 32) for b in full)
    resumed = list(CachedStream(cache, batch_size=7, seed=5, epochs=2).batches(start_step=13))
    assert len(resumed) == len(full) - 13
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[13:]))
    other = list(CachedStream(cache, batch_size=7, seed=6, epochs=1).batches())
    assert not torch.equal(other[0], full[0])
    # no BOS rows, and each epoch is a permutation of the kept rows
    all_rows = cache.all()
    bos_rows = all_rows[cache.token_ids == 1]
    epoch0 = torch.cat(full[: stream.steps_per_epoch])
    assert not any(torch.isclose(epoch0, r).all(1).any() for r in bos_rows)
    assert len(torch.unique(epoch0, dim=0)) == epoch0.shape[0]


def test_live_stream_matches_cache_and_resumes(llama, tmp_path):
    w = _windows(n=12)
    live = LiveStream(llama, w, layer=2, batch_size=5, seed=1, buffer_tokens=24, epochs=2, model_batch=2)
    full = list(live.batches())
    kept = 12 * 8 - 13
    assert live.steps_per_epoch == kept // 5 and len(full) == 2 * (kept // 5)
    for start in (0, 3, 7, live.steps_per_epoch, live.steps_per_epoch + 4):
        resumed = list(live.batches(start))
        assert len(resumed) == len(full) - start
        assert all(torch.allclose(a, b) for a, b in zip(resumed, full[start:])), start
    # the rows are the model's activations at non-BOS positions, each once per epoch
    ref = capture_residuals(llama.model, w, [2])[2].reshape(-1, 32)[w.reshape(-1) != 1]
    epoch0 = torch.cat(full[: live.steps_per_epoch])
    matches = torch.cdist(epoch0, ref).argmin(1)
    torch.testing.assert_close(epoch0, ref[matches])
    assert len(set(matches.tolist())) == epoch0.shape[0]
    torch.nn.Linear(32, 4)(full[0]).sum().backward()  # batches can feed an SAE's autograd graph
    with pytest.raises(UserError, match="fewer than one batch"):
        LiveStream(llama, w[:1], layer=0, batch_size=100)


@pytest.mark.slow
def test_activations_command(smollm2, tmp_path, capsys):
    from nullsae.cli import main

    args = ["activations", "--layers", "2,6", "--tokens", "64", "--window", "32", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("wrote") == 2 and "layer 2: 64 tokens x 576" in out
    assert main(args) == 0
    assert capsys.readouterr().out.count("cached") == 2
    folder = next((tmp_path / "activations" / "smollm2" / "trained").iterdir())
    assert (folder / "manifest.json").is_file() and (folder / "tokens.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "./no/such/folder"], "does not exist"),
        (["--model", "nobody-xyz/no-such-model-123"], "not in the local Hugging Face cache"),
        (["--layers", "30"], "layer 30 is out of range; this model has layers 0..29"),
        (["--data", "EMPTY"], "gives 0 tokens"),
        (["--data", "SMALL", "--tokens", "5000"], "fewer than the"),
        (["--variant", "shuffled"], "unknown variant"),
        (["--layers", "a,b"], "comma-separated integers"),
        (["--model", "BADGGUF"], "could not parse GGUF"),
        (["--model", "REMOTE"], "--trust-remote-code"),
    ],
)
def test_activations_command_bad_input(smollm2, tmp_path, capsys, monkeypatch, extra, message):
    from nullsae.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "BADGGUF" in extra:  # a broken GGUF must not touch the real cache
        monkeypatch.setenv("NULLSAE_CACHE", str(tmp_path / "models"))
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + bytes(64))
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text('{"model_type": "x", "auto_map": {"AutoModelForCausalLM": "m.M"}}')
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "small.txt").write_text("A short text.\n\nAnother one.\n")
    files = {"EMPTY": "empty.txt", "SMALL": "small.txt", "BADGGUF": "bad.gguf", "REMOTE": "remote"}
    extra = [str(tmp_path / files[e]) if e in files else e for e in extra]
    args = ["activations", "--layers", "2", "--tokens", "64", "--window", "32", "--cache-dir", str(tmp_path), "--split", "train", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nullsae activations: error:") and message in err and "\n" not in err
