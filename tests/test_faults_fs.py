"""Fault suite, file-system faults: a file-size limit (what a full disk looks like to a process), a folder
nothing may be written to, a file where a folder should be and a folder where a file should be. Every
one is one error line naming the path and the fix; no half-written target and no temp file is left."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fault_helpers import assert_clean_error, nullsae, temp_files, tiny_folder, write_run_config  # noqa: F401

from nullsae import io_utils
from nullsae.cli import main
from nullsae.errors import UserError
from nullsae.io_utils import atomic_dir, check_writable_dir, write_json, write_text

LIMIT = 64 * 1024


def _unwritable(tmp_path: Path) -> Path:
    """A folder no file may be created in, even by root (sysfs refuses), else a read-only folder."""
    if os.geteuid() == 0:
        return Path("/sys/nullsae-fault-test")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Inside the block, a write of this process past `limit` bytes fails with EFBIG (what a full disk
    looks like to a process); the soft limit and the SIGXFSZ handler are restored after it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


WRITERS = {
    "write_bytes": lambda p: io_utils.write_bytes(p, b"x" * 4 * LIMIT),
    "save_safetensors": lambda p: io_utils.save_safetensors({"a": torch.zeros(LIMIT)}, p),
    "atomic_torch_save": lambda p: io_utils.atomic_torch_save({"a": torch.zeros(LIMIT)}, p),
    "write_parquet": lambda p: io_utils.write_parquet(p, pd.DataFrame({"a": np.random.default_rng(0).random(LIMIT)})),
}


@pytest.mark.parametrize("writer", ["write_bytes", "save_safetensors", "atomic_torch_save", "write_parquet"])
def test_a_write_past_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path, writer):
    target = tmp_path / "big.out"
    with pytest.raises(UserError) as err, _file_size_limit(LIMIT):
        WRITERS[writer](target)
    assert f"cannot write {target}" in str(err.value) and "ulimit -f" in str(err.value)
    assert not target.exists() and not temp_files(tmp_path)


def test_a_failed_overwrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    with pytest.raises(UserError, match="cannot write"), _file_size_limit(LIMIT):
        io_utils.write_bytes(target, b"y" * 4 * LIMIT)
    assert target.read_bytes() == b"old" and not temp_files(tmp_path)


def test_a_failed_folder_fill_keeps_the_old_folder(tmp_path):
    target = tmp_path / "sae"
    atomic_dir(target, lambda d: (d / "w.txt").write_text("old"))

    def fill(d: Path) -> None:
        (d / "w.txt").write_text("new")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="disk is full"):
        atomic_dir(target, fill)
    assert (target / "w.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_a_file_where_a_folder_should_be(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"is a file, not a folder"):
        write_json(tmp_path / "f" / "out.json", {})
    with pytest.raises(UserError, match=r"is a file, not a folder"):
        check_writable_dir(tmp_path / "f")


def test_a_folder_where_a_file_should_be(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match=r"cannot write .*d: it is a folder"):
        write_text(tmp_path / "d", "x")
    assert not temp_files(tmp_path)


def test_an_unwritable_folder_is_refused_by_the_probe(tmp_path):
    with pytest.raises(UserError, match="(no permission|read-only)"):
        check_writable_dir(_unwritable(tmp_path))


def test_synth_with_a_bad_out_fails_before_training(tmp_path, capsys):
    """The issue's example: `synth --out` on a bad path used to crash after training, losing the results.
    The first bad path goes through a fresh process, the others through the same CLI in this one."""
    (tmp_path / "file").write_text("x")
    t0 = time.time()
    assert_clean_error(nullsae("synth", "--steps", "100000", "--out", str(tmp_path / "file"), "--quiet"), str(tmp_path / "file"))
    for out in (tmp_path / "file" / "sub", _unwritable(tmp_path)):
        assert main(["synth", "--steps", "100000", "--out", str(out), "--quiet"]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and ": error: " in errors[0] and str(out) in errors[0], errors
    assert time.time() - t0 < 60  # 100,000 steps would take hours: it stopped before training


@pytest.mark.slow
def test_synth_results_are_printed_when_out_hits_the_size_limit(tmp_path):
    res = nullsae("synth", "--steps", "3", "--curve-points", "1", "--out", str(tmp_path / "out"), "--quiet", file_size_limit=2048)
    assert_clean_error(res, "cannot write", str(tmp_path / "out"), "ulimit -f")
    assert "batchtopk" in res.stdout and "EV" in res.stdout  # the results table came before the failed write
    assert not temp_files(tmp_path)


def test_activations_past_the_size_limit_leave_no_layer(tiny_folder, tmp_path):
    cache = tmp_path / "cache"
    res = nullsae(
        "activations",
        "--model",
        str(tiny_folder),
        "--layers",
        "1",
        "--tokens",
        "4096",
        "--window",
        "32",
        "--cache-dir",
        str(cache),
        file_size_limit=LIMIT,
    )
    assert_clean_error(res, "cannot write", "shard_", "ulimit -f")
    assert not list(cache.rglob("layer_1/meta.json")) and not list(cache.rglob("shard_*")) and not temp_files(cache)


def test_run_out_naming_a_file(tiny_folder, tmp_path):
    cfg = write_run_config(tmp_path / "run.yaml", tiny_folder, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    (tmp_path / "taken").write_text("not a folder")
    res = nullsae("run", str(cfg), "--out", str(tmp_path / "taken"), "--quiet")
    assert_clean_error(res, "taken is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_toy_out_naming_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    res = nullsae("toy", "superposition", "--out", str(tmp_path / "taken"))
    assert_clean_error(res, "taken is a file, not a folder")


def test_a_folder_given_as_the_config_file(tmp_path):
    res = nullsae("run", str(tmp_path), "--out", str(tmp_path / "run"))
    assert_clean_error(res, str(tmp_path))


def test_written_files_get_the_usual_permissions(tmp_path):
    """Temp files are created private (0600); what the write path leaves reads like any new file."""
    mask = os.umask(0)
    os.umask(mask)
    write_text(tmp_path / "a.txt", "x")
    atomic_dir(tmp_path / "d", lambda d: None)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_autointerp_out_naming_a_file_fails_before_the_model_runs(tmp_path, sae_folder):
    (tmp_path / "taken").write_text("x")
    res = nullsae("autointerp", "--sae", str(sae_folder), "--layer", "1", "--model", "/nonexistent/model", "--out", str(tmp_path / "taken"))
    assert_clean_error(res, "taken is a file, not a folder")  # not the missing model: the output folder is checked first
