"""The first hour of a user: `nullsae ls`, log-friendly progress, read-only --sae folders, whole-string example windows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from runner_helpers import tiny_config, tiny_model_dir

from nullsae.cli import main


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> tuple[Path, str]:
    """`nullsae run` of a tiny config (reconstruction and latents: 2 variants x 2 layers, baselines at layer 2) as a
    user runs it under nohup or a scheduler, stderr redirected to a file; the run folder and that log."""
    root = tmp_path_factory.mktemp("first_hour")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_model_dir(root / "tiny-llama"), metrics=["reconstruction", "latents"])))
    out, log = root / "run", root / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "nullsae.cli", "run", str(config), "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=600,
        )
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-2000:]
    return out, text


@pytest.fixture(scope="module")
def tiny_run(logged_run) -> Path:
    return logged_run[0]


def test_progress_in_a_log_is_plain_lines(logged_run):
    """No bar redrawn with carriage returns or cursor escapes; each stage says when it starts and ends."""
    _, log = logged_run
    assert "\r" not in log and "\x1b[" not in log
    lines = log.splitlines()
    assert any(line.startswith("training") and ": started" in line for line in lines), log
    done = [line for line in lines if line.startswith("training") and ": done" in line]
    assert done and all("fvu" in line for line in done), log  # the stage's summary
    assert any(line.startswith("tasks: done, 2 task") for line in lines), log


def test_progress_off_a_terminal_is_one_line_per_stage_start_and_end(capsys):
    from nullsae.progress import progress_bar

    with progress_bar(total=10, desc="stage", unit="step") as b:
        for _ in range(10):
            b.update(1)
        b.set_postfix({"fvu": "0.5"})
    for _ in progress_bar(range(3), desc="loop", unit="batch", leave=False):
        pass
    for _ in progress_bar(range(3), desc="silent", disable=True):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert lines[0] == "stage: started (of 10 step)" and re.fullmatch(r"stage: done, 10 step in \d+\.\d s \(fvu=0\.5\)", lines[1])
    assert lines[2] == "loop: started (of 3 batch)" and re.fullmatch(r"loop: done, 3 batch in \d+\.\d s", lines[3])


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch):
    from tqdm.std import tqdm

    from nullsae.progress import progress_bar

    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        b = progress_bar(range(3), desc="stage")
        assert isinstance(b, tqdm)
        assert list(b) == [0, 1, 2]
    os.close(leader)


def test_ls_lists_every_trained_sae(tiny_run, capsys):
    assert main(["ls", str(tiny_run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cells = sorted(p.parent for p in (tiny_run / "cells").glob("*/sae/cfg.json"))
    assert len(rows) == len(cells) == 7
    assert sorted(Path(r["path"]) for r in rows) == cells
    for r in rows:
        info = json.loads((Path(r["path"]).parent / "cell.json").read_text())
        assert (r["variant"], r["layer"], r["arch"], r["baseline"], r["seed"]) == (
            info["variant"],
            info["layer"],
            info["arch"],
            info["baseline"],
            info["seed"],
        )
    assert {r["variant"] for r in rows} == {"trained", "control"} and {r["layer"] for r in rows} == {0, 2}
    assert sum(r["baseline"] != "none" for r in rows) == 3

    assert main(["ls", str(tiny_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "variant", "layer", "arch", "baseline", "seed", "path"]
    assert len(lines) == 8
    starts = {line.index(r["path"]) for line, r in zip(lines[1:], rows)}
    assert len(starts) == 1  # the path column is aligned


def test_ls_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["ls", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a run folder" in err[0]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def one_sae(tiny_run) -> dict:
    """The `nullsae ls` row of the run's fully trained SAE at layer 2 of the trained model."""
    from nullsae.experiment.store import list_saes

    return next(r for r in list_saes(tiny_run) if r["variant"] == "trained" and r["layer"] == 2 and r["baseline"] == "none")


COMMANDS_WITH_SAE = {
    "probe": ["--tasks", "topic:history", "--n-train", "8", "--n-test", "6", "--ks", "1", "--max-tokens", "24"],
    "edit": ["--grid", "1,4", "--max-pairs", "4", "--min-facts", "2"],
    "audit": [
        "--metrics",
        "reconstruction",
        "--tokens.context",
        "32",
        "--tokens.train",
        "2048",
        "--tokens.eval",
        "256",
        "--train.batch-size",
        "256",
        "--train.warmup-steps",
        "4",
        "--report.n-bootstrap",
        "100",
        "--threads",
        "1",
        "--quiet",
    ],
    "autointerp": [
        "--tokens",
        "512",
        "--window",
        "16",
        "--n-latents-sampled",
        "3",
        "--min-examples",
        "2",
        "--explainer",
        "tokens",
        "--scorers",
        "tokens",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_SAE))
def test_no_command_writes_inside_the_sae_folder(command, one_sae, tmp_path, monkeypatch, capsys):
    """Run with its default output folder, a command reads the --sae folder and leaves every file of it as it was."""
    sae = Path(one_sae["path"])
    before = _snapshot(sae)
    monkeypatch.chdir(tmp_path)
    model = str(Path(one_sae["model"]))
    given = next(sae.glob("*.safetensors")) if command == "autointerp" else sae  # autointerp: a file of the folder stands for it
    model_flag = "--models" if command == "audit" else "--model"
    rc = main([command, "--sae", str(given), "--layer", str(one_sae["layer"]), model_flag, model, *COMMANDS_WITH_SAE[command]])
    assert rc == 0, capsys.readouterr().err
    assert _snapshot(sae) == before
    assert any((tmp_path / "runs").rglob("*")), "the results went to a folder under runs/"


@pytest.mark.parametrize("word", ["Amaterasu Ōmikami", "a smile 🙂 here"])
def test_window_with_a_character_split_across_tokens_decodes_whole(word):
    """Byte-level BPE splits "Ō" (2 bytes) and "🙂" (4 bytes) over several tokens; the window text holds the
    character itself and every token that carries part of it spans it."""
    from runner_helpers import tiny_tokenizer

    from nullsae.text_spans import decode_with_offsets

    tok = tiny_tokenizer()
    sentence = f"The sun goddess {word} rules."
    ids = [tok.bos_token_id, *tok.encode(sentence, add_special_tokens=False)]
    pieces = [tok.decode([i]) for i in ids]
    assert "\ufffd" in "".join(pieces)  # one by one, the split character is lost
    text, spans = decode_with_offsets(tok, ids)
    assert text == sentence and len(spans) == len(ids)
    assert spans[0] == (0, 0)  # BOS
    special = next(ch for ch in word if len(ch.encode()) > 1)
    pos = text.index(special)
    carriers = [i for i, p in enumerate(pieces) if "\ufffd" in p]
    assert len(carriers) >= 2 and all(spans[i][0] <= pos < spans[i][1] for i in carriers)
    assert all(a <= b for a, b in spans) and all(spans[i][0] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert {c for a, b in spans for c in range(a, b)} == set(range(len(text)))  # every character belongs to a token

    cut, cut_spans = decode_with_offsets(tok, ids[: carriers[0] + 1])  # the window ends inside the character
    assert sentence.startswith(cut) and "\ufffd" not in cut and cut_spans[-1] == (len(cut), len(cut))
    from nullsae.text_spans import token_pieces

    pieces = token_pieces(tok, ids)
    assert "".join(pieces) == sentence and len(pieces) == len(ids)
    assert pieces[carriers[0]].endswith(special) and all(special not in pieces[i] for i in carriers[1:])


HELPED = ["synth", "toy", "autointerp", "activations", "ls", "probe", "edit", "run", "demo", "audit"]


@pytest.mark.parametrize("command", HELPED)
def test_every_flag_has_help_that_shows_its_default(command):
    """Each option of the command says what it does, and one with a default (other than off/none) names it."""
    import argparse

    from nullsae.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        if not text.strip():
            missing.append(f"{action.dest}: no help")
        elif "Undefined" in text:
            missing.append(f"{action.dest}: a required argument shows an undefined default")
        elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            missing.append(f"{action.dest}: default {action.default!r} not shown")
    assert not missing, missing


def test_config_flags_show_the_default_of_their_field():
    """A flag made from a config field shows the field's default (the demo preset's value for `demo`)."""
    import argparse

    from nullsae.cli import build_parser
    from nullsae.config import RunConfig, _fields, _shown

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub.choices["run"]._actions}
    fields = _fields(RunConfig)
    shown = [(path, _shown(f.get_default(call_default_factory=True))) for path, f in fields if "default" not in (f.description or "")]
    assert all(f"(default: {value})" in helps[f"cfg:{path}"] for path, value in shown if value is not None)
    assert all("default" in helps[f"cfg:{path}"] for path, f in fields if "default" in (f.description or ""))
    demo = {a.dest: a.help or "" for a in sub.choices["demo"]._actions}
    from nullsae.config import build_config

    preset = build_config("demo", {}).tokens.train
    assert preset != RunConfig().tokens.train  # the demo's help shows its preset's value, not the field's
    assert f"(default: {preset})" in demo["cfg:tokens.train"] and f"(default: {RunConfig().tokens.train})" in helps["cfg:tokens.train"]
    toy = {a.dest: a.help or "" for a in sub.choices["toy"]._actions}
    assert "(default: 100)" in toy["arg:sweep.epochs"] and "(default: 0.8,0.9)" in toy["arg:frontier_ev"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scorers", "detection"], "the detection scorer needs an LLM"),
        (["--scorers", "tokens,foo"], "unknown scorer 'foo'"),
        (["--explainer", "gpt4"], "--explainer: explainer 'gpt4' names no LLM"),
    ],
)
def test_autointerp_refuses_a_setup_that_cannot_work_before_loading(argv, message, one_sae, tmp_path, capsys):
    """The model named does not exist: the error is about the setup, so nothing was loaded first."""
    rc = main(
        ["autointerp", "--sae", one_sae["path"], "--layer", "2", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), *argv]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_autointerp_finds_layer_and_model_in_the_sae_files(one_sae, tmp_path, capsys):
    """An SAE whose files record its hook and model (SAELens format) needs neither --layer nor --model."""
    from nullsae.sae.io import load_sae, save_sae

    folder = save_sae(
        load_sae(one_sae["path"]), tmp_path / "saelens", fmt="saelens", hook="blocks.2.hook_resid_post", model=one_sae["model"]
    )
    argv = ["autointerp", "--sae", str(folder), "--out", str(tmp_path / "out"), *COMMANDS_WITH_SAE["autointerp"]]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "latents.parquet").exists()
    assert main([*argv, "--layer", "1"]) == 2
    assert "not --layer 1; drop --layer" in capsys.readouterr().err


def test_a_run_sae_records_what_it_reads_and_a_bad_layer_is_refused_before_its_weights(one_sae, tmp_path, capsys):
    """A run's SAE copied out of the run keeps its model, variant, layer and hook in cfg.json; a --layer the model
    lacks is refused from those files and the model's config, before the weights are read (here: corrupt)."""
    import json
    import shutil

    from nullsae.sae.io import load_sae_source

    copy = shutil.copytree(one_sae["path"], tmp_path / "copied")
    recorded = json.loads((copy / "cfg.json").read_text(encoding="utf-8"))["trained_on"]
    assert recorded == {"model": one_sae["model"], "variant": "trained", "layer": 2, "hook": "blocks.2.hook_resid_post"}
    source = load_sae_source(copy)[1]
    assert (source.model, source.layer, source.hook) == (one_sae["model"], 2, "blocks.2.hook_resid_post")

    (copy / "sae.safetensors").write_bytes(b"not safetensors")
    capsys.readouterr()
    assert main(["probe", "--sae", str(copy), "--layer", "40", "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer 40" in err[0] and "out of range" in err[0], err


def test_off_a_terminal_the_libraries_draw_no_bars(tmp_path):
    """Once the CLI has started with stderr redirected, transformers' own bars are off, and a plain `tqdm.auto`
    bar (transformers converts a GGUF file under one: "Converting and de-quantizing GGUF tensors...") leaves
    no \r in the log. One fresh process checks both, with the variables that would hide a bar unset."""
    code = (
        "import os; from nullsae.cli import main; main(['ls', os.getcwd()]); from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(50), desc='Converting and de-quantizing GGUF tensors...'): pass\n"
        "from transformers.utils import logging; print(logging.is_progress_bar_enabled())"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("DISABLE_PROGRESS_BARS") and k != "TQDM_DISABLE"}
    with open(tmp_path / "err.log", "wb") as err:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, env=env, text=True, timeout=120, check=True
        )
    assert out.stdout.strip().splitlines()[-1] == "False"
    log = (tmp_path / "err.log").read_text(encoding="utf-8")
    assert "\r" not in log and "Converting" not in log, log


def test_report_example_windows_are_whole_strings(tiny_run):
    """The stored example windows are pieces of each window's whole-string decoding: no lone byte halves."""
    windows = [
        w for f in (tiny_run / "cells").glob("*/latents-examples-*.json") for lat in json.loads(f.read_text()) for w in lat["windows"]
    ]
    assert windows
    for w in windows:
        assert len(w["tokens"]) == len(w["acts"]) and "\ufffd" not in "".join(w["tokens"])
