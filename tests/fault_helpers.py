"""Helpers of the fault suite (tests/test_faults_*.py): run the real CLI in a subprocess (optionally under
a file-size limit), and check what a hostile case may leave behind: one error line and no traceback,
no temp files, no result files from a refused input."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CLI = "import sys; from nullsae.cli import main; sys.exit(main())"


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def nullsae(*args: str, cwd: Path | None = None, file_size_limit: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`nullsae ARGS` in a fresh process; with `file_size_limit` (bytes) every write beyond it fails."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_file_size(file_size_limit) if file_size_limit else None,
    )


def assert_clean_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one `error:` line on stderr (returned) holding every fragment."""
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if ": error: " in line]
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert len(errors) == 1, res.stderr[-3000:]
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def temp_files(root: Path) -> list[Path]:
    """Leftovers of an interrupted or failed write under `root` (temp files and folders of the write path)."""
    return [p for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes or p.name.startswith(".nullsae-probe")]


def result_files(root: Path) -> list[Path]:
    """Result files a run or command wrote under `root` (Parquet tables and parts)."""
    return sorted(Path(root).rglob("*.parquet"))


def save_model_folder(src: Path, dst: Path, edit) -> Path:
    """Copy a model folder, applying `edit(state_dict)` to its weights (e.g. write NaN into one row)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    state = load_file(weights)
    edit(state)
    save_file(state, str(weights), metadata={"format": "pt"})
    return dst


def embedding_key(state: dict[str, torch.Tensor]) -> str:
    return next(k for k in state if "embed_tokens" in k)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A tiny Llama model folder with its own tokenizer (tests/runner_helpers.py)."""
    from runner_helpers import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


def write_run_config(path: Path, model: Path, **over) -> Path:
    """A tiny run config (runner_helpers.tiny_config) as a YAML file."""
    import yaml
    from runner_helpers import tiny_config

    path.write_text(yaml.safe_dump(tiny_config(model, **over)), encoding="utf-8")
    return path
