"""The README's quick commands run as written: every `nullsae …` line of a fenced block marked `<!-- quick`
runs in a fresh folder, in the README's order, on the bundled SmolLM2, with flags appended that make it tiny."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

SMALL = [
    "--tokens.train",
    "2048",
    "--tokens.eval",
    "256",
    "--tokens.interp",
    "2048",
    "--train.batch-size",
    "256",
    "--train.warmup-steps",
    "2",
    "--metrics",
    "reconstruction,latents",
    "--report.n-bootstrap",
    "100",
    "--threads",
    "1",
]
# Appended to each command (a dry run is left as written: its comment states the full plan).
TINY = {
    "demo": ["--variants", "trained,control", "--layers", "2", "--baselines.layers", "2", *SMALL],
    "audit": ["--baselines.kinds", "frozen-decoder", *SMALL],
    "autointerp": ["--tokens", "512", "--window", "16", "--n-latents-sampled", "3", "--min-examples", "2"],
}


def quick_commands() -> list[str]:
    """The `nullsae …` lines of the README's quick blocks, comments dropped."""
    blocks = re.findall(r"<!-- quick.*?-->\n```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.startswith("nullsae ")]


def test_the_readme_marks_quick_commands():
    commands = quick_commands()
    assert len(commands) >= 4 and all(c.split()[1] in {"demo", "ls", "audit", "autointerp", "run"} for c in commands), commands


@pytest.mark.slow
def test_readme_quick_commands_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sae = None
    for command in quick_commands():
        argv = shlex.split(command)[1:]
        if "SAE_FOLDER" in argv:
            assert sae is not None, f"{command}: no SAE trained by an earlier quick command"
            argv = [sae if a == "SAE_FOLDER" else a for a in argv]
        if "--dry-run" not in argv:
            argv += TINY.get(argv[0], [])
        proc = subprocess.run(
            [sys.executable, "-m", "nullsae.cli", *argv], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        if argv[0] == "demo" and "--dry-run" in argv:
            stated = re.search(r"nullsae demo --dry-run +# the plan: (\d+ SAE cells)", README.read_text(encoding="utf-8"))
            assert stated and stated.group(1) in proc.stdout, proc.stdout  # the README's comment on it
        if argv[0] == "ls":
            rows = json.loads(
                subprocess.run([sys.executable, "-m", "nullsae.cli", *argv, "--json"], cwd=tmp_path, capture_output=True, text=True).stdout
            )
            sae = next(r["path"] for r in rows if r["variant"] == "trained" and r["baseline"] == "none")
        if argv[0] in ("demo", "audit") and "--dry-run" not in argv:
            assert proc.stdout.strip().splitlines()[-1].startswith("report: "), proc.stdout[-2000:]
        if argv[0] == "autointerp":
            assert "per-latent results" in proc.stdout, proc.stdout
    assert sae is not None and (tmp_path / "runs" / "demo" / "report.html").exists()
