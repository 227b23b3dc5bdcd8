"""`nullsae audit` end to end on a tiny real model, offline: SAEs found by SAELens release and SAE id
and by hf: repo (SAELens, sparsify and dictionary_learning layouts) in a local HF cache; free nulls
beside the trained baselines; SAEBench JSON and SAELens exports; bad input as one line each."""

import json

import pytest
import torch
from hub_helpers import offline_hub, put_in_hf_cache
from runner_helpers import tiny_model_dir

from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import save_sae

D, M, K = 32, 128, 4  # the tiny model's width
RELEASE, SAE_ID = "gpt2-small-res-jb", "blocks.2.hook_resid_pre"  # a native-layout release in sae-lens's registry
FAST = [
    "--tokens.context",
    "32",
    "--tokens.train",
    "2048",
    "--tokens.eval",
    "256",
    "--tokens.interp",
    "1024",
    "--tokens.interp-window",
    "16",
    "--tokens.model-batch",
    "16",
    "--train.batch-size",
    "256",
    "--train.warmup-steps",
    "4",
    "--report.n-bootstrap",
    "100",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _audit(capsys, *argv):
    from nullsae.cli import main

    rc = main(["audit", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _saelens_files(tmp_path, hook="blocks.2.hook_resid_post", d=D):
    sae = SAE(SAEConfig(arch="topk", d_in=d, n_latents=4 * d, k=K, seed=3)).eval()
    return save_sae(sae, tmp_path / "files", fmt="saelens", hook=hook, model="tiny-llama")


@pytest.mark.slow
def test_audit_by_release_and_by_hf_repo(tiny_dir, tmp_path, monkeypatch, capsys):
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    cache = tmp_path / "hub"
    offline_hub(monkeypatch, cache)
    files = _saelens_files(tmp_path)
    entry = get_pretrained_saes_directory()[RELEASE]
    put_in_hf_cache(cache, entry.repo_id, files, entry.saes_map[SAE_ID])
    rc, out, err = _audit(
        capsys,
        "--release",
        RELEASE,
        "--sae-id",
        SAE_ID,
        "--models",
        str(tiny_dir),
        "--out",
        str(tmp_path / "a"),
        "--json",
        "--metrics",
        "reconstruction,downstream",
        *FAST,
    )
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert {v["null"] for v in summary["verdicts"]} >= {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}
    free = {r["null"]: r for r in summary["free_nulls"]}
    assert set(free) == {"random", "shuffled-decoder", "pca", "identity"}
    for row in free.values():  # every free null at the SAE's L0
        assert row["l0_null"] == pytest.approx(row["l0_sae"], abs=0.6)
    # SAEBench core JSON per SAE, with the downstream scores nullsae computed
    sb = json.loads(open(summary["saebench"]["sae"]).read())
    assert sb["eval_type_id"] == "core" and sb["eval_result_metrics"]["sparsity"]["l0"] == pytest.approx(K)
    assert -1 != sb["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"]
    assert set(summary["saebench"]) == {"sae", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}
    # every trained baseline in SAELens format, loadable by SAELens's own loader, reading the same hook
    for name, folder in summary["saelens"].items():
        theirs = sae_lens.SAE.load_from_disk(folder)
        assert theirs.cfg.metadata.hook_name == "blocks.2.hook_resid_post" and theirs.cfg.d_in == D, name

    put_in_hf_cache(cache, "someone/tiny-saes", files, "layer_2")
    rc, out, err = _audit(
        capsys,
        "--sae",
        "hf:someone/tiny-saes/layer_2",
        "--models",
        str(tiny_dir),
        "--out",
        str(tmp_path / "b"),
        "--metrics",
        "reconstruction",
        *FAST,
    )
    assert rc == 0, err
    assert "free nulls" in out and "identity" in out


@pytest.mark.slow
def test_audit_sparsify_and_dictionary_learning_by_hf(tiny_dir, tmp_path, monkeypatch, capsys):
    sparsify = pytest.importorskip("sparsify")
    cache = tmp_path / "hub"
    offline_hub(monkeypatch, cache)
    torch.manual_seed(0)
    sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=4 * D, k=K)).save_to_disk(tmp_path / "sp" / "layers.1")
    put_in_hf_cache(cache, "someone/sparsify-saes", tmp_path / "sp" / "layers.1", "layers.1")
    rc, out, err = _audit(
        capsys,
        "--sae",
        "hf:someone/sparsify-saes/layers.1",
        "--models",
        str(tiny_dir),
        "--out",
        str(tmp_path / "s"),
        "--json",
        "--metrics",
        "reconstruction",
        *FAST,
    )
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert len(summary["free_nulls"]) == 4

    dl = pytest.importorskip("dictionary_learning")
    from test_io import save_dictionary_learning

    folder = save_dictionary_learning(dl.AutoEncoder(D, 4 * D), tmp_path / "dl", "AutoEncoder", layer=1, lm_name="tiny-llama")
    put_in_hf_cache(cache, "someone/dl-saes", folder, "resid_post_layer_1/trainer_0")
    rc, out, err = _audit(
        capsys,
        "--sae",
        "hf:someone/dl-saes/resid_post_layer_1/trainer_0",
        "--models",
        str(tiny_dir),
        "--out",
        str(tmp_path / "d"),
        "--json",
        "--metrics",
        "reconstruction",
        *FAST,
    )
    assert rc == 0, err
    assert len(json.loads(out.strip().splitlines()[-1])["free_nulls"]) == 4


def test_bad_input_is_one_line_each(tiny_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sae_lens")
    offline_hub(monkeypatch, tmp_path / "hub")
    cases = [
        (["--release", "no-such-release", "--sae-id", "x"], "unknown SAELens release 'no-such-release'"),
        (
            ["--release", RELEASE, "--sae-id", "blocks.99.hook_resid_pre"],
            f"SAE id 'blocks.99.hook_resid_pre' is not in release '{RELEASE}'",
        ),
    ]
    folder = _saelens_files(tmp_path / "h", hook="blocks.7.hook_resid_post")
    cases.append((["--sae", str(folder)], "the SAE reads hook blocks.7.hook_resid_post: layer 7 is out of range"))
    folder = _saelens_files(tmp_path / "w", d=48)
    cases.append((["--sae", str(folder)], "the SAE reads d_in = 48 but .* has width 32"))
    folder = _saelens_files(tmp_path / "m", hook="blocks.2.hook_mlp_out")
    cases.append((["--sae", str(folder)], "residual-stream SAEs only"))
    sae = SAE(SAEConfig(arch="relu", d_in=D, n_latents=4 * D))
    (tmp_path / "p").mkdir()
    torch.save(sae, tmp_path / "p" / "ae.pt")  # a pickled module, not a state dict
    (tmp_path / "p" / "config.json").write_text(
        json.dumps({"trainer": {"dict_class": "AutoEncoder", "activation_dim": D, "dict_size": 4 * D, "layer": 1}})
    )
    cases.append((["--sae", str(tmp_path / "p")], "not a plain state dict"))
    folder = _saelens_files(tmp_path / "x")
    for argv, message in cases:
        rc, _, err = _audit(capsys, *argv, "--models", str(tiny_dir), "--dry-run", *FAST)
        assert rc == 2, (argv, err)
        line = err.strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert pytest.importorskip("re").search(message, line), (message, line)
    rc, _, err = _audit(capsys, "--sae", str(folder), "--models", "EleutherAI/pythia-70m", "--dry-run")
    assert rc == 2 and "the SAE was trained on tiny-llama, but --models is EleutherAI/pythia-70m" in err
    rc, _, err = _audit(capsys, "--sae", str(folder), "--models", str(tiny_dir), "--train.seeds", "0,1", "--dry-run", *FAST)
    assert rc == 2 and "single --train.seeds" in err
    rc, _, err = _audit(capsys, "--sae", str(folder), "--layer", "1", "--models", str(tiny_dir), "--dry-run")
    assert rc == 2 and "not --layer 1" in err
    rc, out, _ = _audit(capsys, "--sae", str(folder), "--models", str(tiny_dir), "--dry-run", *FAST)
    assert rc == 0 and "layer 2" in out
