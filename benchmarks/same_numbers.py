"""Does a refactor change any number? Runs short CLI commands under an old commit's code and the working tree's.

Each case runs `python -m nullsae.cli …` twice, once with PYTHONPATH at the old commit's `src/` (a
temporary git worktree, removed at the end) and once at this tree's, one thread each, then compares every
number in the JSON the command wrote (its `--out` folder), leaving out the timings, the echoed config and
the file list. Prints one line per case: numbers compared, how many differ, the largest difference.

    .venv/bin/python benchmarks/same_numbers.py 8884e4c [--steps 150] [--only synth-topk toy-superposition]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_NUMBERS = {"seconds", "train_seconds", "threads", "files", "config", "elapsed_s"}
ARCHS = ["topk", "batchtopk", "jumprelu", "relu", "matryoshka"]


def cases(steps: int) -> dict[str, tuple[list[str], str]]:
    """Case name → (CLI arguments before `--out DIR`, the JSON file the command writes there)."""
    synth = ["synth", "--device", "cpu", "--quiet", "--curve-points", "3", "--steps", str(steps)]
    out = {f"synth-{a}": ([*synth, "--arch", a], "synth.json") for a in ARCHS}
    out["synth-topk-baselines"] = ([*synth, "--arch", "topk", "--baselines"], "synth.json")
    for a in ("topk", "batchtopk", "jumprelu"):  # --paper's schedule, cut to `steps` (batchtopk: its lr drop inside the run)
        drop = ["--lr-drop-step", str(steps // 2)] if a == "batchtopk" else []
        out[f"synth-{a}-paper-constant"] = ([*synth, "--arch", a, "--paper", "--setting", "constant", *drop], "synth.json")
    toy = ["toy", "--device", "cpu", "--seeds", "0", "--epochs", "3"]
    out["toy-superposition"] = ([*toy[:1], "superposition", *toy[1:], "--coefs", "0.003", "0.03", "0.3"], "results.json")
    out["toy-glove"] = (
        [*toy[:1], "glove", *toy[1:], "--latents", "200", "--samples", "2000", "--coefs", "0.01", "0.1", "1"],
        "results.json",
    )
    return out


def numbers(obj: object, path: str = "") -> dict[str, float]:
    """Every number under `obj` by its JSON path, skipping the keys in NOT_NUMBERS."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() if key not in NOT_NUMBERS for k, v in numbers(val, f"{path}.{key}").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in numbers(val, f"{path}[{i}]").items()}
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return {}
    return {path: float(obj)}


def run(src: Path, argv: list[str], file: str, out: Path) -> dict[str, float]:
    """Runs the command with the code under `src`; its JSON output's numbers (the log beside `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nullsae.cli", *argv, "--out", str(out)]
    with (out.parent / f"{out.name}.log").open("w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    return numbers(json.loads((out / file).read_text()))


def compare(old: dict[str, float], new: dict[str, float]) -> str:
    """One line: how many shared numbers differ and by how much at most, and the paths only one side has."""
    shared = old.keys() & new.keys()
    diffs = {k: abs(old[k] - new[k]) for k in shared if not (old[k] == new[k] or (math.isnan(old[k]) and math.isnan(new[k])))}
    only = sorted(old.keys() ^ new.keys())
    line = f"{len(shared)} numbers, {len(diffs)} differ"
    if diffs:
        worst = max(diffs, key=lambda k: diffs[k])
        line += f", largest {diffs[worst]:.3g} at {worst} ({old[worst]!r} vs {new[worst]!r})"
    if only:
        line += f"; in one side only: {', '.join(only[:5])}{' …' if len(only) > 5 else ''}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="the commit before the refactor")
    ap.add_argument("--steps", type=int, default=150, help="training steps of each synth case")
    ap.add_argument("--only", nargs="*", help="run only these cases")
    ap.add_argument("--keep", type=Path, help="keep every case's output and log in this folder")
    args = ap.parse_args()
    todo = {k: v for k, v in cases(args.steps).items() if not args.only or k in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.old], check=True, capture_output=True)
        try:
            for name, (argv, file) in todo.items():
                got = {side: run(src, argv, file, work / name / side) for side, src in (("old", tree / "src"), ("new", ROOT / "src"))}
                print(f"{name:32s} {compare(got['old'], got['new'])}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


if __name__ == "__main__":
    main()
