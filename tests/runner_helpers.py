"""Tiny real runs for the runner tests: a 3-layer Llama built from a small config and a small
byte-level BPE tokenizer trained on the bundled corpus, saved together as a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nullsae.config import RunConfig, build_config


def tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (BOS `<s>`) trained on 2,000 documents of the bundled corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from nullsae.data import bundled_documents

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([d.text for d in bundled_documents()[:2000]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiny_model_dir(root: Path, seed: int = 0) -> Path:
    """Save a tiny LlamaForCausalLM (d = 32, 3 layers) and its tokenizer to `root` (a model folder)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if (root / "config.json").exists():
        return root
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


TINY_PROBING = dict(
    tasks=["topic:history", "topic:mathematics", "continent:europe"],
    n_train=8,
    n_test=6,
    ks=[1, 4],
    max_tokens=24,
    batch_size=32,
    max_iter=200,
)
ALL_METRICS = ["reconstruction", "downstream", "latents", "autointerp", "probing", "editing"]


def tiny_config(model_dir: Path, **over: Any) -> dict[str, Any]:
    """A run config small enough for a test: 2 variants, 2 layers, baselines at one, the four activation
    metric families (add probing and editing with `metrics=ALL_METRICS`; TINY_PROBING keeps them small)."""
    cfg: dict[str, Any] = dict(
        name="tiny",
        models=[str(model_dir)],
        variants=["trained", "control"],
        layers=[0, 2],
        sae=dict(expansion=4, k=4),
        baselines=dict(layers=[2]),
        tokens=dict(context=32, train=6144, eval=256, interp=2048, model_batch=16, interp_window=16),
        train=dict(batch_size=256, warmup_steps=4, checkpoint_every=3, lr=0.003),
        autointerp=dict(
            scorers=["tokens"],
            examples=dict(n_latents_sampled=6, min_examples=4, top_k=40, n_explain=8, per_bin=1, n_negative=6, reservoir=40),
        ),
        report=dict(n_bootstrap=100, example_latents=1),
        threads=1,
        metrics=["reconstruction", "downstream", "latents", "autointerp"],
        probing=TINY_PROBING,
        editing=dict(n_latents_grid=[4, 16], max_pairs=4),
    )
    for k, v in over.items():
        cfg[k] = v
    return cfg


def tiny_run_config(model_dir: Path, **over: Any) -> RunConfig:
    return build_config(None, {}, base=tiny_config(model_dir, **over))
