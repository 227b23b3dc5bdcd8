"""Fault suite, concurrent runs: a second process on a run folder, activation cache entry, synth resume
folder or toy output folder says which process holds it and exits 2; a lock left by a killed process
is taken over. Every holder here is a real second process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fault_helpers import assert_clean_error, env, nullsae, tiny_folder, write_run_config  # noqa: F401

from nullsae.locks import LOCK_NAME, FolderBusy, folder_lock

HOLD = "import sys, time\nfrom nullsae.locks import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"


class Holder:
    """A second process that holds the lock of `folder` until stopped (or killed)."""

    def __init__(self, folder: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env())
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)


def test_a_held_folder_names_the_holder(tmp_path):
    with Holder(tmp_path) as h:
        with pytest.raises(FolderBusy, match=rf"in use by process {h.proc.pid} on .*wait for it to finish, or use another folder"):
            with folder_lock(tmp_path, "run folder"):
                pass


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path):
    h = Holder(tmp_path)
    os.kill(h.proc.pid, signal.SIGKILL)
    h.proc.wait(30)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == h.proc.pid  # the stale record is still there
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_released_lock_is_free_again_and_reentrant(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):  # the same process may nest it (run folder → its cache entries)
            pass
    with Holder(tmp_path):
        pass
    with folder_lock(tmp_path):
        pass


def test_synth_on_a_resume_folder_in_use_exits_2(tmp_path):
    with Holder(tmp_path / "resume") as h:
        res = nullsae("synth", "--steps", "3", "--resume-dir", str(tmp_path / "resume"), "--quiet")
    assert_clean_error(res, "synth resume folder", f"process {h.proc.pid}")


def test_toy_on_an_output_folder_in_use_exits_2(tmp_path):
    with Holder(tmp_path / "toy") as h:
        res = nullsae(
            "toy", "superposition", "--seeds", "0", "--coefs", "0.1", "--epochs", "1", "--samples", "256", "--out", str(tmp_path / "toy")
        )
    assert_clean_error(res, "toy output folder", f"process {h.proc.pid}")


def test_activations_on_a_cache_entry_in_use_exits_2(tiny_folder, tmp_path):
    args = ("activations", "--model", str(tiny_folder), "--layers", "1", "--tokens", "1024", "--window", "32", "--cache-dir", str(tmp_path))
    assert nullsae(*args).returncode == 0
    entry = next(tmp_path.rglob("tokens.safetensors")).parent
    with Holder(entry) as h:
        res = nullsae(*args)
    assert_clean_error(res, "activation cache entry", f"process {h.proc.pid}")


def test_run_on_a_run_folder_in_use_exits_2_and_writes_nothing(tiny_folder, tmp_path):
    cfg = write_run_config(tmp_path / "run.yaml", tiny_folder, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    out = tmp_path / "run"
    with Holder(out) as h:
        res = nullsae("run", str(cfg), "--out", str(out), "--quiet")
    assert_clean_error(res, "run folder", f"process {h.proc.pid}")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_taking_a_lock_removes_what_a_killed_holder_half_wrote(tmp_path):
    """SIGKILL in the middle of a write leaves `.NAME.XXXX.tmp`; the next holder of the folder removes it."""
    code = (
        "import os, sys, time\nfrom nullsae import io_utils\nfrom nullsae.locks import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    io_utils.atomic_write(os.path.join(sys.argv[1], 'sub', 'big.bin'), lambda tmp: (print('writing', flush=True), time.sleep(120)))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    (stale,) = (tmp_path / "sub").iterdir()
    assert stale.name.startswith(".big.bin.") and stale.name.endswith(".tmp")
    (tmp_path / "sub" / "keep.txt").write_text("kept")
    with folder_lock(tmp_path):
        assert [p.name for p in (tmp_path / "sub").iterdir()] == ["keep.txt"]
