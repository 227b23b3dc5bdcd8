"""The synthetic ground-truth benchmark (docs/spec.md#synthetic): data generator statistics and the `nullsae synth` command."""

import json

import pytest
import torch

from nullsae.cli import main
from nullsae.sae.train import TrainConfig
from nullsae.toy.korznikov import KorznikovData


@pytest.mark.parametrize("setting", ["constant", "variable"])
def test_generator_matches_the_specified_distribution(setting):
    data = KorznikovData(setting, batch_size=4096, seed=3)
    assert torch.allclose(data.features.norm(dim=1), torch.ones(3200), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    rows, cols = data._bernoulli_support(50_000, g)
    per_sample = rows.numel() / 50_000
    assert per_sample == pytest.approx(float(data.p.sum()), rel=0.02)  # ≈ 20 active features
    assert 19 < per_sample < 21.5
    freq = torch.bincount(cols, minlength=3200).double() / 50_000
    p = data.p.double()
    z = (freq - p) / (p * (1 - p) / 50_000).sqrt()  # per-feature frequencies follow p_i
    assert z.abs().max() < 5.5 and abs(float(z.mean())) < 0.2
    assert len(set(zip(rows.tolist(), cols.tolist()))) == rows.numel()  # Bernoulli: no repeats
    x = data.sample(2000, torch.Generator().manual_seed(1))
    assert x.shape == (2000, 100) and (x.norm(dim=1) > 0).float().mean() > 0.99


def test_batches_are_reproducible_from_any_step():
    data = KorznikovData("variable", batch_size=64, seed=2)
    straight = [b for _, b in zip(range(5), data.batches(0))]
    resumed = [b for _, b in zip(range(2), data.batches(3))]
    assert torch.equal(straight[3], resumed[0]) and torch.equal(straight[4], resumed[1])
    assert not torch.equal(straight[0], straight[1])


@pytest.mark.slow
def test_synth_command_reports_every_baseline_as_json(capsys, tmp_path):
    code = main(["synth", "--setting", "constant", "--arch", "topk", "--baselines", "--steps", "10", "--json", "--out", str(tmp_path)])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["setting"] == "constant"
    assert [r["baseline"] for r in report["results"]] == ["none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"]
    for r in report["results"]:
        assert set(r) == {"arch", "baseline", "ev", "l0", "recovered_fraction", "mmcs", "mcc"}
        assert r["l0"] == pytest.approx(20.0)
        assert 0 <= r["recovered_fraction"] <= 1 and -1 < r["ev"] < 1
    assert (tmp_path / "recovery_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "synth.json").read_text())["config"]["steps"] == 10


def test_synth_bad_input_is_one_line(capsys):
    assert main(["synth", "--arch", "foo", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown SAE architecture 'foo'" in err[0]
    assert main(["synth", "--arch", "topk", "--steps", "0"]) == 2
    capsys.readouterr()
    assert main(["synth", "--arch", "topk", "--steps", "1", "--dead-tokens", "0"]) == 2
    assert "--dead-tokens: Input should be greater than 0" in capsys.readouterr().err
    assert main(["synth", "--arch", "topk", "--steps", "1", "--device", "tpu7"]) == 2
    assert "unknown device 'tpu7'" in capsys.readouterr().err
    assert main(["synth", "--arch", "topk", "--steps", "1", "--auxk-coef", "-1"]) == 2
    assert "--auxk-coef: Input should be greater than or equal to 0" in capsys.readouterr().err
    assert main(["synth", "--arch", "topk", "--steps", "1", "--lr-drop-factor", "0"]) == 2
    assert "--lr-drop-factor: Input should be greater than 0" in capsys.readouterr().err


def test_paper_setting_is_per_architecture_and_explicit_options_override_it():
    from nullsae.cli import build_parser
    from nullsae.commands.synth import synth_config

    def cfg(*argv):
        return synth_config(build_parser().parse_args(["synth", *argv, "--device", "cpu"]))

    def key(c):
        return (c.steps, c.lr, c.decay_fraction, c.lr_drop_step, c.dead_tokens)

    assert key(cfg("--arch", "batchtopk", "--paper")) == (16_000, 3e-3, 0.2, 7_000, 200_000)
    assert key(cfg("--arch", "topk", "--paper")) == (11_000, 3e-3, 0.0, None, 2_000_000)
    assert key(cfg("--arch", "jumprelu", "--paper")) == (20_000, 3e-3, 0.0, None, 2_000_000)
    assert key(cfg("--arch", "relu", "--paper")) == (40_000, 3e-3, 0.2, None, 2_000_000)
    mine = cfg(
        "--arch",
        "batchtopk",
        "--paper",
        "--steps",
        "9000",
        "--dead-tokens",
        "5000",
        "--lr-drop-step",
        "3000",
        "--lr",
        "1e-3",
        "--decay-fraction",
        "0",
    )
    assert key(mine) == (9000, 1e-3, 0.0, 3000, 5000)
    assert key(cfg("--arch", "batchtopk")) == (2_000, 2e-3, 0.2, None, 2_000_000)


def test_dead_tokens_and_auxk_coef_decide_which_latents_auxk_trains():
    """A short dead window lets AuxK train the silent latents; with a window longer than the run, or with
    --auxk-coef 0, only fired rows move."""
    from nullsae import synth

    def rows_moved(dead_tokens: int, auxk_coef: float = 1 / 32) -> int:
        cfg = synth.SynthConfig(setting="variable", arch="batchtopk", batch_size=64, l0=1, dead_tokens=dead_tokens, auxk_coef=auxk_coef)
        sae = synth.SAE(synth._sae_config(cfg, "none"))
        data = KorznikovData(cfg.setting, batch_size=cfg.batch_size)
        synth.train_saes({"none": sae}, data, TrainConfig(steps=8, lr=1e-2, warmup_steps=0), progress=False)
        cos = torch.nn.functional.cosine_similarity(sae.W_dec, sae.W_dec_init, dim=1)
        return int((cos < 1 - 1e-6).sum())

    stays, revived, off = rows_moved(10**9), rows_moved(64), rows_moved(64, auxk_coef=0)
    assert max(stays, off) <= 8 * 64 < 2_000 < revived  # batch top-64 fires at most 64 latents a step


def test_interrupted_synth_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    from nullsae import synth

    cfg = synth.SynthConfig(setting="constant", arch="topk", steps=6, curve_points=3, eval_size=512, batch_size=256, n_latents=400)
    straight = synth.run_synth(cfg, progress=False)
    real, calls = synth._evaluate, []

    def dies_at_second_curve_point(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "_evaluate", dies_at_second_curve_point)
    with pytest.raises(KeyboardInterrupt):
        synth.run_synth(cfg, progress=False, checkpoint_dir=tmp_path)
    monkeypatch.setattr(synth, "_evaluate", real)
    resumed = synth.run_synth(cfg, progress=False, checkpoint_dir=tmp_path)
    assert resumed.results == straight.results
    assert [p.model_dump() for p in resumed.curve] == [p.model_dump() for p in straight.curve]


def test_silent_fraction_counts_latents_that_never_fire_on_held_out_data():
    """Latents barred from every top-k slot show up as silent, and only those."""
    from nullsae import synth

    cfg = synth.SynthConfig(setting="constant", arch="topk", eval_size=2048)
    data = KorznikovData(cfg.setting)
    sae = synth.SAE(synth._sae_config(cfg, "none"))
    x = data.eval_set(cfg.eval_size)
    sae.initialize(x)
    before = synth._evaluate(sae, data, x, with_mcc=False)["silent_fraction"]
    with torch.no_grad():
        sae.b_enc[:320] = -1e6  # these 320 latents can never win a top-k slot
    after = synth._evaluate(sae, data, x, with_mcc=False)["silent_fraction"]
    assert before < 0.05 and 0.1 - 1e-6 <= after <= before + 0.1 + 1e-6
