"""Fault suite, validation before work: settings refused per architecture before anything runs, and
every piece of advice in an error names an option that the command reaching it accepts."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
from pathlib import Path

import pytest
from fault_helpers import assert_clean_error, nullsae, tiny_folder, write_run_config  # noqa: F401

from nullsae.cli import build_parser, main
from nullsae.errors import UserError, advice, set_command_options
from nullsae.sae.config import SAEConfig

_SPEC = importlib.util.find_spec("nullsae")
assert _SPEC is not None and _SPEC.origin is not None
SRC = Path(_SPEC.origin).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)*")
OTHER_PROGRAM = re.compile(r"`(?!nullsae)[^`]*`")  # `ray start --head`, `pip install ...`: not nullsae's flags


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka", "jumprelu"])
def test_k_not_below_m_is_refused_for_every_k_architecture(arch):
    with pytest.raises(UserError, match=rf"{arch}: k = 64 must be smaller than the number of latents m = 64"):
        SAEConfig(arch=arch, d_in=8, n_latents=64, k=64)


def test_run_refuses_jumprelu_k_at_least_m_before_any_work(tiny_folder, tmp_path):
    """The issue's example: jumprelu accepted k ≥ m and trained dense."""
    cfg = write_run_config(tmp_path / "run.yaml", tiny_folder, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    res = nullsae("run", str(cfg), "--sae.archs", "jumprelu", "--sae.k", "128", "--out", str(tmp_path / "run"), "--quiet")
    assert_clean_error(res, "jumprelu: k = 128 must be smaller than the number of latents m = 128")
    assert not (tmp_path / "run").exists()


# ----- advice names only flags the command has --------------------------------------------------


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """nullsae modules a file imports anywhere (top level or inside functions)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _user_error_flags(tree: ast.AST) -> list[tuple[int, str]]:
    """Flags written in the message of a UserError raised in this file, outside `advice(...)` calls."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "advice":
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "UserError":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in skip:
                    found += [(sub.lineno, f) for f in FLAG.findall(OTHER_PROGRAM.sub("", sub.value))]
    return found


def _command_options() -> dict[str, set[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, p in sub.choices.items():
        out[name] = set(p._option_string_actions)
    return out


def test_every_flag_an_error_suggests_is_accepted_by_each_command_that_reaches_it():
    files = {_module_of(p): p for p in SRC.rglob("*.py")}
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in files.items()}
    deps = {m: _imports(t, set(files)) for m, t in trees.items()}
    options = _command_options()
    reach: dict[str, set[str]] = {m: set() for m in files}
    for command in options:
        seen, todo = set(), [f"nullsae.commands.{command}"]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += deps.get(m, ())
        for m in seen:
            reach[m].add(command)
    problems, checked = [], 0
    for m, tree in trees.items():
        for line, flag in _user_error_flags(tree):
            checked += 1
            for command in sorted(reach[m]):
                if flag not in options[command]:
                    problems.append(f"{files[m].relative_to(SRC)}:{line} suggests {flag}, which `nullsae {command}` does not accept")
    assert checked > 20  # the scan sees the messages
    assert not problems, "\n".join(problems)


def test_advice_follows_the_running_command():
    set_command_options(["--text-field", "--out"])
    try:
        assert advice("--text-field", "use --text-field", "rename the field") == "use --text-field"
        assert advice("--trust-remote-code", "use --trust-remote-code", "not here") == "not here"
    finally:
        set_command_options(None)
    assert advice("--trust-remote-code", "use --trust-remote-code", "not here") == "use --trust-remote-code"


def test_run_never_suggests_flags_it_lacks(tiny_folder, tmp_path, capsys):
    """The issue's example: `nullsae run` said "rerun with --trust-remote-code", a flag `run` lacks."""
    import json

    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((tiny_folder / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "x.Y"}}))
    cfg = write_run_config(tmp_path / "run.yaml", remote, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs its own code" in err and "--trust-remote-code" not in err and "does not run a model's own code" in err
    assert main(["activations", "--model", str(remote), "--layers", "1", "--tokens", "64", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "rerun with --trust-remote-code" in capsys.readouterr().err


@pytest.mark.slow
def test_min_examples_above_every_count_is_a_warning_and_a_report_on_every_rerun(tiny_folder, tmp_path):
    """The issue's example: `min_examples` larger than any latent's count crashed the runner on every rerun."""
    cfg = write_run_config(
        tmp_path / "run.yaml",
        tiny_folder,
        variants=["trained"],
        layers=[1],
        baselines=dict(layers=[], kinds=[]),
        metrics=["latents", "autointerp"],
    )
    args = ("run", str(cfg), "--autointerp.examples.min-examples", "1000000", "--out", str(tmp_path / "run"))
    for attempt in range(2):  # the rerun finds every part done and reports again
        res = nullsae(*args)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
        assert ("no latent fires in at least 1000000 interpretation windows" in res.stderr) == (attempt == 0)
        assert (tmp_path / "run" / "report.html").exists()


def test_more_tokens_than_the_corpus_holds_is_one_line(tiny_folder, tmp_path):
    cfg = write_run_config(tmp_path / "run.yaml", tiny_folder, variants=["trained"], layers=[1], baselines=dict(layers=[], kinds=[]))
    src = tmp_path / "small.txt"
    src.write_text("a short text.\n\nanother short paragraph.\n")
    res = nullsae("run", str(cfg), "--tokens.source", str(src), "--out", str(tmp_path / "run"), "--quiet")
    assert_clean_error(res, "fewer than the", "ask for fewer tokens or give more text")
    assert not list((tmp_path / "run").rglob("*.parquet"))
