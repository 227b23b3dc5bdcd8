"""Run config: YAML round trip, CLI overrides for every field, one-line errors before any compute."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import yaml

from nullsae.config import (
    RunConfig,
    _leaves,
    add_config_flags,
    apply_overrides,
    build_config,
    dump_yaml,
    load_yaml,
    overrides_from_args,
    parse_config,
    preset_names,
)
from nullsae.errors import UserError


def test_presets_parse_and_round_trip():
    assert {"demo", "paper-pythia-70m"} <= set(preset_names())
    for name in preset_names():
        cfg = build_config(name, {})
        again = parse_config(yaml.safe_load(dump_yaml(cfg)))
        assert again == cfg


def test_demo_preset_is_the_issue_demo():
    cfg = build_config("demo", {})
    assert cfg.models == ["smollm2"]
    assert set(cfg.variants) == {"trained", "rerandomized", "rerandomized-excl-emb", "step0", "control"}
    assert len(cfg.layers) >= 2 and cfg.sae.archs == ["topk"]
    assert set(cfg.baselines.kinds) == {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}
    assert len(cfg.baseline_layers()) == 1
    assert set(cfg.metrics) == {"reconstruction", "downstream", "latents", "autointerp", "probing", "editing"}
    assert cfg.probing.baseline_layers_only and cfg.editing.baseline_layers_only  # probing and editing where the baselines are
    assert set(cfg.autointerp.scorers) == {"tokens", "embedding"} and cfg.autointerp.explainer == "tokens"


def test_train_seeds_flag_and_bad_seeds(tmp_path):
    assert build_config("demo", {"train.seeds": "0,1,2"}).train.seeds == [0, 1, 2]
    for bad, msg in (("", "give at least one seed"), ("0,1,0", "seed 0 is listed twice")):
        with pytest.raises(UserError, match=msg):
            build_config("demo", {"train.seeds": bad})
    assert parse_config({"train": {"seed": 3}}).train.seeds == [3]  # a run directory's config from before train.seeds
    res = subprocess.run(
        [sys.executable, "-m", "nullsae.cli", "run", "demo", "--dry-run", "--train.seeds", "1,1"], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "listed twice" in res.stderr


def test_every_field_has_a_flag_and_overrides_it():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    leaves = _leaves(RunConfig)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for path, _, _ in leaves:
        assert "--" + path.replace("_", "-") in flags
    args = parser.parse_args(
        [
            "--layers",
            "1,4",
            "--sae.k",
            "16",
            "--tokens.train",
            "50_000",
            "--baselines.layers",
            "4",
            "--autointerp.examples.min-examples",
            "7",
            "--train.lr",
            "none",
            "--tokens.skip-bos",
            "false",
            "--autointerp.scorers",
            "tokens",
        ]
    )
    cfg = build_config("demo", overrides_from_args(args))
    assert cfg.layers == [1, 4] and cfg.sae.model_dump()["k"] == 16 and cfg.tokens.train == 50_000 and cfg.baselines.layers == [4]
    assert cfg.autointerp.examples.min_examples == 7 and cfg.train.lr is None and cfg.tokens.skip_bos is False
    assert cfg.autointerp.scorers == ["tokens"]


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"layerz": [1]}, "unknown config key 'layerz'"),
        ({"sae": {"kk": 3}}, "unknown config key 'sae.kk'"),
        ({"autointerp": {"examples": {"top": 3}}}, "unknown config key 'autointerp.examples.top'"),
        ({"variants": ["trained", "shuffled"]}, "unknown variant 'shuffled'"),
        ({"sae": {"archs": ["foo"]}}, "unknown SAE architecture 'foo'"),
        ({"baselines": {"kinds": ["frozen-everything"]}}, "unknown SAE baseline 'frozen-everything'"),
        ({"metrics": ["vibes"]}, "unknown metric family 'vibes'"),
        ({"layers": [2], "baselines": {"layers": [5]}}, "baselines.layers [5] are not among layers"),
        ({"tokens": {"context": 48, "interp_window": 32}}, "must divide context"),
    ],
)
def test_bad_config_is_one_clear_line(data, needle):
    with pytest.raises(UserError) as err:
        parse_config(data)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_bad_flag_value_and_unknown_file(tmp_path):
    with pytest.raises(UserError, match="--sae.k"):
        apply_overrides({}, {"sae.k": "many"})
    with pytest.raises(UserError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(bad)
    for text in ("", "# only a comment\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(UserError, match="is empty; copy a preset"):
            load_yaml(empty)


def test_empty_config_file_exits_2_before_loading_a_model(tmp_path):
    """`nullsae run EMPTY.yaml` would run every default on SmolLM2: one line, exit 2, no run folder."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    res = _cli("run", str(empty), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 2 and "is empty" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0 and not (tmp_path / "run").exists()


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nullsae.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_rejects_bad_config_before_compute(tmp_path, capsys):
    """Unknown key, variant or architecture, layer out of range: exit 2, one line, no run directory."""
    from runner_helpers import tiny_config, tiny_model_dir

    from nullsae.cli import main

    model = tiny_model_dir(tmp_path / "tiny-llama")
    capsys.readouterr()
    cases = [
        ({"variants": ["trained", "nonsense"]}, [], "unknown variant 'nonsense'"),
        ({"sae": {"archs": ["topk"], "widht": 3}}, [], "unknown config key 'sae.widht'"),
        ({}, ["--sae.archs", "foo"], "unknown SAE architecture 'foo'"),
        ({}, ["--layers", "2,3"], "tiny-llama, which has layers 0..2"),
    ]
    for i, (over, flags, needle) in enumerate(cases):
        cfg = tmp_path / f"bad{i}.yaml"
        cfg.write_text(yaml.safe_dump({**tiny_config(model), **over}))
        assert main(["run", str(cfg), "--out", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.strip().count("\n") == 0, err
    # the same through the console command: no traceback
    res = _cli("run", str(cfg), "--out", str(tmp_path / "run"), "--layers", "2,3", cwd=tmp_path)
    assert res.returncode == 2 and "layer 3 is out of range" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


def _command(model, argv, **kw):
    """Parse `argv` with the flags `add_flags` makes for `model`; the validated config."""
    from nullsae.config import add_flags, config_from_args

    parser = argparse.ArgumentParser()
    flags = add_flags(parser, model, **kw)
    return config_from_args(model, parser.parse_args(argv), flags)


def test_command_flags_come_from_the_config():
    """Lists take several values or commas, a bool off by default is a switch, a nested section's fields
    keep their own names, a positional field is positional, and a bad value names its flag."""
    from nullsae.autointerp.config import AutointerpConfig
    from nullsae.toy.config import ToyConfig

    cfg = _command(ToyConfig, ["glove", "--seeds", "0", "1,2", "--epochs", "3", "--mcc", "false"], skip=("sweep.latents", "sweep.device"))
    assert (cfg.experiment, cfg.seeds, cfg.sweep.epochs, cfg.sweep.mcc, cfg.sweep.lr) == ("glove", [0, 1, 2], 3, False, 1e-3)
    with pytest.raises(UserError, match=r"^--epochs: Input should be greater than 0$"):
        _command(ToyConfig, ["glove", "--epochs", "0"], skip=("sweep.latents", "sweep.device"))
    with pytest.raises(ValueError, match="both be --latents"):
        _command(ToyConfig, ["glove"])  # ToyConfig.latents and sweep.latents would share a flag
    auto = _command(
        AutointerpConfig,
        ["--explainer", "hf:smollm2", "--n-latents-sampled", "7", "--seed", "3", "--timeout", "5"],
        names={"openai.timeout_s": "timeout"},
    )
    assert auto.scorers == ["detection", "fuzzing", "embedding"]  # no --scorers: they follow the explainer
    assert (auto.examples.n_latents_sampled, auto.examples.seed, auto.openai.timeout_s) == (7, 3, 5.0)
    with pytest.raises(UserError, match="the detection scorer needs an LLM"):
        _command(AutointerpConfig, ["--scorers", "detection"])


def test_examples_seed_is_the_autointerp_seed_and_old_keys_still_read():
    cfg = parse_config({"autointerp": {"seed": 4, "examples": {"n_latents": 9, "seed": 1}}})  # a run folder's config before the rename
    assert cfg.autointerp.examples.n_latents_sampled == 9 and cfg.autointerp.examples.seed == 4
    assert "seed" not in yaml.safe_load(dump_yaml(cfg))["autointerp"]["examples"]
    with pytest.raises(UserError, match="unknown config key 'autointerp.examples.seed'"):
        apply_overrides({}, {"autointerp.examples.seed": "1"})


def test_config_classes_import_without_torch():
    code = "import nullsae.config, nullsae.toy.config, nullsae.cli, sys; nullsae.cli.build_parser(); assert 'torch' not in sys.modules, 'torch'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
