"""Fault suite, degenerate data: NaN/inf or variance-free activations are refused where they enter (the
activation cache, the live stream, a whole run), naming model, variant, layer and the share of bad rows,
and nothing is written that a metric could read as a number."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from fault_helpers import (  # noqa: F401
    assert_clean_error,
    embedding_key,
    nullsae,
    result_files,
    save_model_folder,
    temp_files,
    tiny_folder,
    write_run_config,
)

from nullsae.activations import DegenerateActivations, LiveStream, SpreadCheck, fill_cache
from nullsae.models import LoadedModel


def _windows(n: int = 8, t: int = 16, bos: int = 1) -> torch.Tensor:
    w = torch.randint(3, 96, (n, t), generator=torch.Generator().manual_seed(0))
    w[:, 0] = bos
    return w


def _nan_rows(state: dict[str, torch.Tensor]) -> None:
    """NaN in the embedding rows of a few frequent merged tokens of the tiny tokenizer."""
    state[embedding_key(state)][300:310] = float("nan")


def test_nan_in_a_model_folder_is_one_error_naming_where_and_how_much(tiny_folder, tmp_path):
    """A few NaN weights (one embedding row): `activations` exits 2 naming model, variant, layer and the share."""
    bad = save_model_folder(tiny_folder, tmp_path / "nan-model", _nan_rows)
    res = nullsae(
        "activations", "--model", str(bad), "--layers", "1", "--tokens", "2048", "--window", "32", "--cache-dir", str(tmp_path / "cache")
    )
    assert_clean_error(res, "model nan-model", "variant trained", "layer 1", "NaN or inf", "%) of windows")
    assert not list((tmp_path / "cache").rglob("layer_1/meta.json")) and not list((tmp_path / "cache").rglob("shard_*"))
    assert not temp_files(tmp_path)


def test_all_zero_activations_are_refused_not_read_as_ev_one(tmp_path):
    loaded = tiny_model("gpt2")
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.zero_()
    with pytest.raises(DegenerateActivations, match=r"layer 1 are all zero in all \d+ rows \(100% of rows\).*0/0"):
        fill_cache(loaded, _windows(bos=0), [1], tmp_path, progress=False)
    assert not (tmp_path / "layer_1" / "meta.json").exists()


def test_a_constant_vector_is_refused():
    check = SpreadCheck(LoadedModel(model=None, tokenizer=None, name="m", n_layers=1, d_model=4, bos_id=None), layer=0)
    check.update(torch.tensor([[1.0, -2.0, 3.0, 0.5]]).repeat(64, 1), "rows 0-64")
    with pytest.raises(DegenerateActivations, match="one constant vector in all 64 rows"):
        check.finish()


def test_varied_activations_pass_the_check():
    check = SpreadCheck(LoadedModel(model=None, tokenizer=None, name="m", n_layers=1, d_model=4, bos_id=None), layer=0)
    check.update(torch.randn(64, 4), "rows 0-64")
    check.finish()


def test_float16_overflow_is_refused_with_the_fix(tmp_path):
    """Residuals beyond float16's range become inf in a float16 cache: refused, and the message says to store float32."""
    loaded = tiny_model("llama")
    with torch.no_grad():
        loaded.model.model.embed_tokens.weight.mul_(1e6)
    with pytest.raises(DegenerateActivations, match="NaN or inf in .* rows .*store float32"):
        fill_cache(loaded, _windows(), [0], tmp_path, dtype="float16", progress=False)


def test_the_live_stream_refuses_nan_rows():
    loaded = tiny_model("llama")
    with torch.no_grad():
        loaded.model.model.embed_tokens.weight[7] = float("nan")
    w = _windows()
    w[3, 4] = 7
    stream = LiveStream(loaded, w, 1, batch_size=16)
    with pytest.raises(DegenerateActivations, match="layer 1 hold NaN or inf"):
        next(stream.batches())


def test_a_resumed_cache_still_checks_its_finished_shards(tmp_path):
    """A shard written before an interruption counts in the variance check of the resumed fill."""
    loaded = tiny_model("gpt2")
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.zero_()
    w = _windows(bos=0)
    from safetensors.torch import save_file

    (tmp_path / "layer_1").mkdir(parents=True)
    fill_tokens = w.numel()
    save_file({"acts": torch.zeros(fill_tokens // 2, 32)}, str(tmp_path / "layer_1" / "shard_00000000-00000004.safetensors"))
    with pytest.raises(DegenerateActivations, match="all zero"):
        fill_cache(loaded, w, [1], tmp_path, shard_tokens=4 * 16, progress=False)


@pytest.mark.slow
def test_run_on_a_nan_model_exits_2_before_any_result(tiny_folder, tmp_path):
    """The issue's example: NaN at a few positions. `nullsae run` refuses at the train split; no metrics, no report."""
    bad = save_model_folder(tiny_folder, tmp_path / "nan-model", _nan_rows)
    cfg = write_run_config(tmp_path / "run.yaml", bad, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    res = nullsae("run", str(cfg), "--out", str(tmp_path / "run"), "--quiet")
    assert_clean_error(res, "nan-model", "layer 1", "NaN or inf")
    assert not result_files(tmp_path / "run") and not (tmp_path / "run" / "report.html").exists()
    assert not temp_files(tmp_path / "run")


def test_a_toy_sweep_on_constant_vectors_is_refused():
    """The toy EV divides by the data's variance too: constant input is refused, not scored EV 1."""
    from nullsae.errors import UserError
    from nullsae.toy.data import ToyData
    from nullsae.toy.sweep import SweepConfig, run_sweep

    flat = ToyData(name="flat", x=torch.ones(64, 8), seed=0)
    with pytest.raises(UserError, match="'flat' .* one constant vector in all 64 rows; EV would be 0/0"):
        run_sweep([flat], SweepConfig(latents=[16], coefs=[0.1], epochs=1, batch_size=16, mcc=False), progress=False)
