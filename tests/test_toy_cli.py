"""`nullsae toy`: one clear error line for bad input, JSON as the last stdout line, CSV and PNG files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_model

from nullsae.cli import main

KEYS = {"data", "latents", "coef", "ev", "l0", "l1", "l1_sqrt_l2", "hoyer", "mmcs", "sem"}


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nullsae toy: error:") and message in err[0], err


def test_bad_input_gives_one_error_line(tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.zeros(30))
    nan = np.random.default_rng(0).normal(size=(20, 4))
    nan[5, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    out = ["--out", str(tmp_path / "o")]
    _fails(capsys, ["toy", "glove", "--vectors", str(tmp_path / "flat.npy"), *out], "2-D")
    _fails(capsys, ["toy", "glove", "--vectors", str(tmp_path / "nan.npy"), *out], "NaN")
    _fails(capsys, ["toy", "superposition", "--coefs", *out], "empty")
    _fails(capsys, ["toy", "superposition", "--latents", "0", *out], "--latents")
    _fails(capsys, ["toy", "glove", "--epochs", "0", *out], "--epochs")
    _fails(capsys, ["toy", "superposition", "--frontier-ev", "1.5", *out], "--frontier-ev")


def _json_last_line(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


def test_glove_file_sweep_json_and_files(tmp_path, capsys):
    vecs = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    argv = [
        "toy",
        "glove",
        "--vectors",
        str(tmp_path / "v.npy"),
        "--latents",
        "16",
        "--coefs",
        "0.01",
        "0.3",
        "--epochs",
        "2",
        "--json",
        "--out",
        str(tmp_path / "g"),
    ]
    assert main(argv) == 0
    res = _json_last_line(capsys)
    assert res["experiment"] == "glove"
    assert {p["data"] for p in res["points"]} == {"inputs", "gaussian", "mlp-inputs", "mlp-gaussian"}
    assert len(res["points"]) == 8 and all(KEYS <= set(p) for p in res["points"])
    assert all(p["mmcs"] is None and p["latents"] == 16 for p in res["points"])
    for name in ("runs.csv", "points.csv", "results.json", "fig07_pareto_l1_sqrt_l2.png", "pareto_all_metrics.png"):
        assert (tmp_path / "g" / name).stat().st_size > 0
    assert not (tmp_path / "g" / "checkpoints").exists()  # resume state is gone once the sweep completes


def test_superposition_reduced_sweep_has_mmcs(tmp_path, capsys):
    argv = [
        "toy",
        "superposition",
        "--samples",
        "300",
        "--latents",
        "16",
        "--seeds",
        "0",
        "1",
        "--coefs",
        "0.03",
        "--epochs",
        "1",
        "--data",
        "inputs",
        "gaussian",
        "--json",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    res = _json_last_line(capsys)
    by = {p["data"]: p for p in res["points"]}
    assert set(by) == {"inputs", "gaussian"}
    assert 0 < by["inputs"]["mmcs"] <= 1 and by["gaussian"]["mmcs"] is None
    assert by["inputs"]["sem"]["ev"] is not None  # two seeds
    assert res["train_seconds"] > 0 and res["threads"] >= 1
    assert [(f["data"], f["ev"]) for f in res["frontier_at_ev"]] == [(d, ev) for ev in (0.8, 0.9) for d in ("inputs", "gaussian")]
    for fig in (
        "fig05_mmcs.png",
        "fig06_pareto_l1_sqrt_l2.png",
        "fig13_pareto_l0.png",
        "fig14_pareto_l1.png",
        "fig15_pareto_l1_sqrt_l2.png",
        "fig16_pareto_hoyer.png",
    ):
        assert (tmp_path / fig).stat().st_size > 0


def test_other_sweeps_checkpoints_give_one_warning_line(tmp_path):
    """A sweep that cannot resume the unfinished work in OUT/checkpoints says so, in one stderr line."""
    (tmp_path / "checkpoints" / "0123456789abcdef").mkdir(parents=True)
    argv = [
        "toy",
        "superposition",
        "--samples",
        "200",
        "--latents",
        "8",
        "--seeds",
        "0",
        "--coefs",
        "0.03",
        "--epochs",
        "1",
        "--data",
        "inputs",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "nullsae.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("nullsae toy: warning:") and "other sweeps (0123456789abcdef)" in warning[0], (
        proc.stderr
    )
    assert (tmp_path / "checkpoints" / "0123456789abcdef").is_dir()  # the other sweep's work is kept


def test_lomax_figure(tmp_path, capsys):
    assert main(["toy", "lomax", "--samples", "2000", "--json", "--out", str(tmp_path)]) == 0
    res = _json_last_line(capsys)
    assert res == {**res, "experiment": "lomax", "points": []}
    assert (tmp_path / "fig04_lomax.png").stat().st_size > 0 and (tmp_path / "lomax.csv").is_file()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny Llama saved as a model folder with a word-level tokenizer (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    loaded = tiny_model("llama")
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(96)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2").save_pretrained(folder)
    loaded.model.save_pretrained(folder)
    return folder


def test_embeddings_of_trained_and_null_variants(tiny_folder, tmp_path, capsys):
    argv = [
        "toy",
        "embeddings",
        "--model",
        str(tiny_folder),
        "--variants",
        "trained",
        "rerandomized",
        "--latents",
        "16",
        "--coefs",
        "0.05",
        "--epochs",
        "2",
        "--data",
        "inputs",
        "mlp-inputs",
        "--json",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    res = _json_last_line(capsys)
    assert {p["data"] for p in res["points"]} == {"trained/inputs", "trained/mlp-inputs", "rerandomized/inputs", "rerandomized/mlp-inputs"}
    assert res["config"]["d"] == 32
    assert (tmp_path / "fig07_pareto_l1_sqrt_l2.png").is_file()
