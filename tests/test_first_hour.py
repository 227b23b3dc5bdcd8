"""The first hour of a user: `nullsae ls`, log-friendly progress, read-only --sae folders, whole-string example windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_helpers import tiny_model_dir, tiny_run_config

from nullsae.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny real run (reconstruction only): 2 variants x 2 layers, baselines at layer 2."""
    from nullsae.experiment import execute

    root = tmp_path_factory.mktemp("first_hour")
    out = root / "run"
    execute(tiny_run_config(tiny_model_dir(root / "tiny-llama"), metrics=["reconstruction"]), out, progress=False)
    return out


def test_ls_lists_every_trained_sae(tiny_run, capsys):
    assert main(["ls", str(tiny_run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cells = sorted(p.parent for p in (tiny_run / "cells").glob("*/sae/cfg.json"))
    assert len(rows) == len(cells) == 7
    assert sorted(Path(r["path"]) for r in rows) == cells
    for r in rows:
        info = json.loads((Path(r["path"]).parent / "cell.json").read_text())
        assert (r["variant"], r["layer"], r["arch"], r["baseline"], r["seed"]) == (
            info["variant"], info["layer"], info["arch"], info["baseline"], info["seed"])
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
