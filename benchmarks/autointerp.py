"""Auto-interpretability throughput: latents explained and scored per minute, and example collection
at SAE scale (m = 36,864 latents, TopK k = 32) with its peak memory.

Paths timed (docs/spec.md#autointerp defaults: 40 explainer windows, 100 activating + 100 random test windows):
  tokens     token-list explainer + token-list scorer (no model)
  embedding  token-list explainer + embedding scorer (bundled all-MiniLM-L6-v2)
  hf         hf:smollm2 explainer + detection scorer (bundled SmolLM2-135M-Instruct, in-process)
Latents are planted on single word tokens of the bundled corpus, so every latent has full example sets.

    .venv/bin/python benchmarks/autointerp.py [--latents 20] [--hf-latents 1] [--scale-tokens 1000000]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter

import torch

from nullsae.autointerp.examples import ActivationSource, ExampleConfig, SparseActs, collect_examples, count_firing, select_latents
from nullsae.autointerp.explainers import LLMExplainer, TokensExplainer, TokenText
from nullsae.autointerp.llm import HFClient
from nullsae.autointerp.scorers import DetectionScorer, EmbeddingScorer, TokenListScorer
from nullsae.data import token_windows
from nullsae.models import load_model


def planted_source(loaded, n_windows: int, n_latents: int) -> ActivationSource:
    W = token_windows(loaded.tokenizer, loaded.bos_id, 32, n_windows, split="train")
    freq = torch.zeros(len(loaded.tokenizer))
    for row in W:
        freq[row.unique()] += 1
    freq /= n_windows
    text = TokenText(loaded.tokenizer)
    cands = ((freq > 0.08) & (freq < 0.4)).nonzero().flatten().tolist()
    ids = torch.tensor([i for i in cands if text.strings[i].strip().isalpha()][:n_latents])

    def encode(wids):
        x = W[wids]
        acts = (x[..., None] == ids).float() * (1 + ((x[..., None] * 7 + torch.arange(32)[:, None]) % 5) / 5)
        return SparseActs.from_dense(acts, wids)

    return ActivationSource(W, encode, len(ids))


def topk_scale_source(n_tokens: int, m: int, k: int = 32) -> ActivationSource:
    """A deterministic TopK-like code: latent ids skewed towards low ids (a long-tailed firing density)."""
    T = 32
    n_windows = n_tokens // T

    def encode(wids):
        w = wids.long()[:, None, None]
        p = torch.arange(T)[None, :, None]
        j = torch.arange(k)[None, None, :]
        h = (w * 2654435761 + p * 40503 + j * 2246822519) % 4294967291
        u = (h % 1_000_003).float() / 1_000_003
        idx = (u.pow(2) * m).long().clamp_max(m - 1)
        vals = 1 + (h % 13).float() / 13
        return SparseActs.from_topk(vals.expand(len(wids), T, k), idx.expand(len(wids), T, k), wids)

    return ActivationSource(torch.zeros(n_windows, T, dtype=torch.long), encode, m, batch_windows=256)


def per_minute(n: int, seconds: float) -> float:
    return 60 * n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=20, help="latents for the tokens and embedding paths")
    ap.add_argument("--hf-latents", type=int, default=1, help="latents for the hf path (0 skips it)")
    ap.add_argument("--windows", type=int, default=6000, help="32-token windows of the bundled corpus (train split)")
    ap.add_argument("--scale-tokens", type=int, default=1_000_000, help="tokens of the m = 36,864 collection test (0 skips it)")
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    if args.scale_tokens:
        m = 36_864
        src = topk_scale_source(args.scale_tokens, m)
        t = time.time()
        counts = count_firing(src)
        t_count = time.time() - t
        sel = select_latents(counts, ExampleConfig())
        t = time.time()
        collect_examples(src, sel.latents, ExampleConfig())
        t_collect = time.time() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"collection m={m} k=32 over {args.scale_tokens:,} tokens: count pass {args.scale_tokens / t_count:,.0f} tok/s, "
            f"example pass (100 latents) {args.scale_tokens / t_collect:,.0f} tok/s, {sel.n_eligible} eligible latents, peak RSS {rss:,.0f} MiB"
        )

    loaded = load_model("smollm2")
    text = TokenText(loaded.tokenizer)
    src = planted_source(loaded, args.windows, max(args.latents, args.hf_latents, 1))
    cfg = ExampleConfig()
    t = time.time()
    examples = collect_examples(src, list(range(src.n_latents)), cfg)
    t_ex = time.time() - t
    print(f"examples for {src.n_latents} planted latents over {args.windows * 32:,} tokens: {t_ex:.1f}s")
    items = [examples[j] for j in range(args.latents)]

    if args.latents:
        time_token_paths(text, items)
    if args.hf_latents:
        hf_items = [examples[j] for j in range(args.hf_latents)]
        client = HFClient(loaded.model, loaded.tokenizer, "smollm2", batch_size=8)
        t = time.time()
        expl = LLMExplainer(client, text).explain(hf_items)
        t_expl = time.time() - t
        res = DetectionScorer(client, text).score(list(zip(hf_items, expl)))
        dt = time.time() - t
        failed = Counter()
        for r in res:
            failed.update(r.failures)
        print(
            f"hf:smollm2: {args.hf_latents} latents (explain {t_expl:.1f}s, detection on 200 windows in 40 prompts) in {dt:.1f}s "
            f"= {per_minute(args.hf_latents, dt):.2f} latents/min; failed items {sum(failed.values())}/{200 * args.hf_latents} {dict(failed)}"
        )
        print(f"explanations: {[e.text for e in expl]}")


def time_token_paths(text: TokenText, items: list) -> None:
    n = len(items)
    t = time.time()
    expl = TokensExplainer(text).explain(items)
    TokenListScorer(text).score(list(zip(items, expl)))
    dt = time.time() - t
    print(f"tokens    : {n} latents in {dt:.2f}s = {per_minute(n, dt):,.0f} latents/min")

    emb = EmbeddingScorer(text)  # model load not timed
    t = time.time()
    expl = TokensExplainer(text).explain(items)
    emb.score(list(zip(items, expl)))
    dt = time.time() - t
    print(f"embedding : {n} latents in {dt:.2f}s = {per_minute(n, dt):,.1f} latents/min")


if __name__ == "__main__":
    main()
