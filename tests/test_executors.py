"""Executors: the Ray path on a local Ray instance started by the test gives what the local path gives."""

from __future__ import annotations

import functools
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from runner_helpers import tiny_model_dir, tiny_run_config

from nullsae.assets import package_dir
from nullsae.errors import UserError
from nullsae.experiment.executors import LocalExecutor, RayExecutor, make_executor

pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray head (`ray start --head --block`), stopped by its own PID at the end."""
    import ray

    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="nsray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    ray_bin = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
            f"--temp-dir={temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("ray start exited early")
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail("the Ray head did not come up within 120 s")
    time.sleep(3)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        proc.terminate()  # SIGTERM: `ray start --block` drains and stops the processes it started
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_make_executor_checks_its_arguments():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match="--address only applies"):
        make_executor("local", "127.0.0.1:1")
    with pytest.raises(UserError, match="unknown executor"):
        make_executor("slurm")


@pytest.mark.slow
def test_ray_maps_in_order_and_reports_user_errors(ray_address):
    ex = RayExecutor(ray_address)
    assert ex.map(math.factorial, [3, 4, 5], ["a", "b", "c"], progress=False) == [6, 24, 120]
    missing = functools.partial(package_dir, pip_name="no-such-asset")  # raises UserError in the worker
    with pytest.raises(UserError, match="second: the bundled asset package 'no-such-asset' is not installed"):
        ex.map(missing, ["json", "no_such_module_xyz"], ["first", "second"], progress=False)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.mark.slow
def test_ray_run_equals_local_run(ray_address, tiny_dir, tmp_path):
    """Cells spread over the Ray cluster give the numbers the local executor gives."""
    from nullsae.pipeline import execute

    cfg = tiny_run_config(tiny_dir, metrics=["reconstruction"])
    execute(cfg, tmp_path / "local", progress=False)
    ray_run = execute(cfg, tmp_path / "ray", executor="ray", address=ray_address, progress=False)
    assert sum(o.trained for o in ray_run.outcomes) == len(ray_run.plan.cells) == 7
    a = pd.read_parquet(tmp_path / "local" / "metrics.parquet").sort_values("key").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "ray" / "metrics.parquet").sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (tmp_path / "ray" / "report.html").exists()
