"""Fault suite, bad files: corrupt, truncated, empty or mistyped inputs and state files. Each one is one
error line naming the file and the fix (exit 2), or a documented skip with a warning."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from conftest import tiny_model
from fault_helpers import assert_clean_error, nullsae, tiny_folder  # noqa: F401

from nullsae.activations import CachedActivations, fill_cache
from nullsae.data import iter_documents
from nullsae.errors import UserError


def test_a_truncated_model_safetensors(tiny_folder, tmp_path):
    """The issue's example: a truncated `model.safetensors` in a model folder."""
    bad = shutil.copytree(tiny_folder, tmp_path / "truncated")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    res = nullsae(
        "activations", "--model", str(bad), "--layers", "1", "--tokens", "256", "--window", "32", "--cache-dir", str(tmp_path / "c")
    )
    assert_clean_error(res, "could not load model", "truncated", "complete checkpoint")


def test_a_corrupt_config_json_in_a_model_folder(tiny_folder, tmp_path):
    bad = shutil.copytree(tiny_folder, tmp_path / "badcfg")
    (bad / "config.json").write_text("{not json")
    res = nullsae(
        "activations", "--model", str(bad), "--layers", "1", "--tokens", "256", "--window", "32", "--cache-dir", str(tmp_path / "c")
    )
    assert_clean_error(res, "config.json is not valid JSON")


def test_a_corrupt_run_manifest(tmp_path):
    """The issue's example: a corrupt `manifest.json` in a run folder."""
    (tmp_path / "manifest.json").write_text('{"config": {"name": ')
    res = nullsae("report", str(tmp_path))
    assert_clean_error(res, "run manifest", "manifest.json is corrupt")


def test_jsonl_rows_with_null_text_are_skipped_with_a_warning_never_cached_as_none(tmp_path):
    """The issue's example: `"text": null` was cached as the word "None"."""
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": null}\n{"text": "kept row"}\n{"text": "   "}\n{"other": 1, "text": null}\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs = list(iter_documents(str(src)))
    assert [d.text for d in docs] == ["kept row"]
    assert any("skipped 3 rows whose 'text' is null or empty" in str(w.message) for w in caught)


@pytest.mark.parametrize("value", ["5", '["a"]', '{"t": 1}', "true"])
def test_jsonl_text_that_is_not_a_string_is_refused(tmp_path, value):
    src = tmp_path / "docs.jsonl"
    src.write_text(f'{{"text": "fine"}}\n{{"text": {value}}}\n')
    with pytest.raises(UserError, match=r"docs.jsonl:2: field 'text' holds a \w+, not text"):
        list(iter_documents(str(src)))


def test_parquet_nulls_are_skipped(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": ["a b", None, "c"]}).to_parquet(tmp_path / "d.parquet")
    assert [d.text for d in iter_documents(str(tmp_path / "d.parquet"))] == ["a b", "c"]


def test_a_jsonl_without_the_field_names_the_flag_the_command_has(tiny_folder, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"body": "x"}\n')
    res = nullsae(
        "activations",
        "--model",
        str(tiny_folder),
        "--layers",
        "1",
        "--tokens",
        "256",
        "--window",
        "32",
        "--data",
        str(src),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert_clean_error(res, "has no 'text' field", "--text-field")


def _cache(tmp_path):
    loaded = tiny_model("llama")
    w = torch.randint(3, 96, (8, 16), generator=torch.Generator().manual_seed(0))
    w[:, 0] = 1
    fill_cache(loaded, w, [1], tmp_path, shard_tokens=64, progress=False)
    return tmp_path


def test_a_corrupt_cache_index(tmp_path):
    d = _cache(tmp_path)
    (d / "layer_1" / "meta.json").write_text("{")
    with pytest.raises(UserError, match="activation cache layer index .* is corrupt .* delete"):
        CachedActivations(d, 1)


def test_a_truncated_cache_shard(tmp_path):
    d = _cache(tmp_path)
    shard = sorted((d / "layer_1").glob("shard_*"))[1]
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(UserError, match=rf"activation cache file .*{shard.name} is corrupt or unreadable"):
        CachedActivations(d, 1)


def test_a_truncated_shard_of_an_interrupted_fill(tmp_path):
    """A damaged shard that an interrupted fill left is reported when the fill resumes, not loaded."""
    d = _cache(tmp_path)
    (d / "layer_1" / "meta.json").unlink()
    shard = sorted((d / "layer_1").glob("shard_*"))[0]
    shard.write_bytes(b"\x00" * 12)
    loaded = tiny_model("llama")
    w = torch.randint(3, 96, (8, 16), generator=torch.Generator().manual_seed(0))
    w[:, 0] = 1
    with pytest.raises(UserError, match="is corrupt or unreadable"):
        fill_cache(loaded, w, [1], d, shard_tokens=64, progress=False)


@pytest.mark.slow
def test_a_corrupt_synth_resume_folder(tmp_path):
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "trainer.pt").write_bytes(b"PK\x03\x04 truncated")
    res = nullsae("synth", "--steps", "3", "--resume-dir", str(resume), "--quiet")
    assert_clean_error(res, "trainer.pt is corrupt or unreadable", "delete it")
    (resume / "trainer.pt").unlink()
    (resume / "curve.json").write_text("[{")
    res = nullsae("synth", "--steps", "3", "--resume-dir", str(resume), "--quiet")
    assert_clean_error(res, "synth recovery curve", "curve.json is corrupt")


def test_a_corrupt_toy_sweep_checkpoint(tmp_path):
    """A finished stack's results file damaged between an interruption and the rerun."""
    from nullsae.toy.data import sharkey, with_controls
    from nullsae.toy.sweep import SweepConfig, run_sweep

    s = sharkey(n_samples=200, d=8, n_features=16, seed=0)
    sets = with_controls(s.x, 0, s.features, mlp=False)
    cfg = SweepConfig(latents=[16], coefs=[0.01, 0.3], epochs=2, batch_size=64, max_stack=2, mcc=False)
    run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path, save_seconds=0, stop_after_epochs=3)
    (done,) = tmp_path.rglob("*.json")
    done.write_text('[{"data": ')
    with pytest.raises(UserError, match=r"sweep checkpoint .*\.json is corrupt .*delete it to retrain that part"):
        run_sweep(sets, cfg, progress=False, checkpoint_dir=tmp_path)


def test_a_folder_given_as_a_text_source(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        list(iter_documents(str(tmp_path)))
