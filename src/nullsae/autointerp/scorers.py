"""Scorers: how well an explanation separates a latent's activating windows from non-activating ones.

Each gives one score per test window (higher = "the latent fires here"), NaN for an item it could
not score (failed request, unparseable answer), with the reasons counted. `detection` and `fuzzing`
ask a chat model about 5 shuffled windows per prompt (docs/spec.md#autointerp); `embedding` is the cosine between
explanation and window embeddings; `tokens` checks whether a window holds a listed token.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from nullsae.autointerp import prompts
from nullsae.autointerp.config import SCORERS
from nullsae.autointerp.examples import Example, LatentExamples
from nullsae.autointerp.explainers import Explanation, TokenText, marks, parse_token_list
from nullsae.autointerp.llm import ChatRequest, LLMClient, answer_probs
from nullsae.errors import UserError, advice
from nullsae.extras import require


@dataclass
class ScoreResult:
    """Scores of one latent's test windows under one scorer."""

    latent: int
    scorer: str
    scores: list[float]  # NaN where the item failed
    labels: list[int]  # 1 activating, 0 not
    quantiles: list[int]  # activation-quantile bin of activating windows, -1 for negatives
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())


def _test_items(ex: LatentExamples) -> list[tuple[Example, int]]:
    return [(e, 1) for e in ex.positives] + [(e, 0) for e in ex.negatives]


def _failed(ex: LatentExamples, name: str, reason: str) -> ScoreResult:
    items = _test_items(ex)
    return ScoreResult(
        ex.latent, name, [math.nan] * len(items), [y for _, y in items], [e.quantile for e, _ in items], {reason: len(items)}
    )


class _ChatScorer:
    """Shared by detection and fuzzing: shuffle, batch 5 windows per prompt, read P("1")."""

    name = ""
    system = ""

    def __init__(self, client: LLMClient, text: TokenText, threshold: float = 0.3, per_prompt: int = 5, seed: int = 0):
        self.client, self.text, self.threshold, self.per_prompt, self.seed = client, text, threshold, per_prompt, seed

    def render(self, items: list[tuple[Example, int]], gen: torch.Generator) -> list[str]:
        return [self.text.render(e.tokens) for e, _ in items]

    def score(self, pairs: list[tuple[LatentExamples, Explanation]]) -> list[ScoreResult]:
        reqs: list[ChatRequest] = []
        plans = []
        for ex, expl in pairs:
            if expl.text is None:
                plans.append(None)
                continue
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + ex.latent)
            items = _test_items(ex)
            order = torch.randperm(len(items), generator=gen).tolist()
            items = [items[i] for i in order]
            rendered = self.render(items, gen)
            chunks = [list(range(i, min(i + self.per_prompt, len(items)))) for i in range(0, len(items), self.per_prompt)]
            first = len(reqs)
            for ch in chunks:
                msgs = prompts.scorer_messages(self.system, expl.text, [rendered[i] for i in ch])
                reqs.append(ChatRequest(messages=msgs, max_tokens=8 + 4 * len(ch), logprobs=True, prefill="["))
            plans.append((items, chunks, first))
        done = self.client.complete(reqs, desc=f"{self.name} scoring") if reqs else []
        out = []
        for (ex, _), plan in zip(pairs, plans):
            if plan is None:
                out.append(_failed(ex, self.name, "no explanation"))
                continue
            items, chunks, first = plan
            scores = [math.nan] * len(items)
            failures: Counter[str] = Counter()
            for j, ch in enumerate(chunks):
                probs, reason = answer_probs(done[first + j], len(ch))
                if probs is None:
                    failures[reason] += len(ch)
                    continue
                for i, p in zip(ch, probs):
                    scores[i] = p
            out.append(ScoreResult(ex.latent, self.name, scores, [y for _, y in items], [e.quantile for e, _ in items], dict(failures)))
        return out


class DetectionScorer(_ChatScorer):
    """Does the latent fire anywhere in this (unmarked) window, given the explanation?"""

    name = "detection"
    system = prompts.DETECTION_SYSTEM


class FuzzingScorer(_ChatScorer):
    """Are the marked tokens the ones the explanation describes? Activating windows carry their own
    marks; non-activating ones ceil(mean marks of the positives) marks on random tokens."""

    name = "fuzzing"
    system = prompts.FUZZING_SYSTEM

    def render(self, items: list[tuple[Example, int]], gen: torch.Generator) -> list[str]:
        pos_marks = [int(marks(e, self.threshold).sum()) for e, y in items if y == 1]
        n = max(1, math.ceil(sum(pos_marks) / len(pos_marks))) if pos_marks else 1
        out = []
        for e, y in items:
            if y == 1:
                m = marks(e, self.threshold)
            else:
                where = self.text.visible(e.tokens).nonzero().flatten()
                m = torch.zeros(e.tokens.numel(), dtype=torch.bool)
                m[where[torch.randperm(where.numel(), generator=gen)[:n]]] = True
            out.append(self.text.render(e.tokens, m))
        return out


class EmbeddingScorer:
    """cos(embed(explanation), embed(window)) with a sentence-embedding model (bundled all-MiniLM-L6-v2)."""

    name = "embedding"

    def __init__(self, text: TokenText, model: Any = None, batch_size: int = 64):
        if model is None:
            SentenceTransformer = require("sentence_transformers", "embed").SentenceTransformer

            from nullsae import assets

            model = SentenceTransformer(str(assets.minilm_dir()), device="cpu")
        self.model, self.text, self.batch_size = model, text, batch_size

    def score(self, pairs: list[tuple[LatentExamples, Explanation]]) -> list[ScoreResult]:
        out = []
        for ex, expl in pairs:
            if expl.text is None:
                out.append(_failed(ex, self.name, "no explanation"))
                continue
            items = _test_items(ex)
            texts = [expl.text] + [self.text.render(e.tokens) for e, _ in items]
            emb = self.model.encode(
                texts, batch_size=self.batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
            )
            cos = (emb[1:] @ emb[0]).cpu().tolist()
            out.append(ScoreResult(ex.latent, self.name, cos, [y for _, y in items], [e.quantile for e, _ in items]))
        return out


class TokenListScorer:
    """A window is positive (1) when it contains one of the explanation's listed token strings."""

    name = "tokens"

    def __init__(self, text: TokenText):
        self.text = text

    def score(self, pairs: list[tuple[LatentExamples, Explanation]]) -> list[ScoreResult]:
        out = []
        for ex, expl in pairs:
            listed = parse_token_list(expl.text) if expl.text else None
            if not listed:
                out.append(_failed(ex, self.name, "not a token-list explanation"))
                continue
            wanted = set(listed)
            items = _test_items(ex)
            scores = [float(any(self.text.strings[t] in wanted for t in e.tokens.tolist())) for e, _ in items]
            out.append(ScoreResult(ex.latent, self.name, scores, [y for _, y in items], [e.quantile for e, _ in items]))
        return out


def make_scorer(name: str, text: TokenText, client: LLMClient | None = None, threshold: float = 0.3, seed: int = 0):
    """A scorer by name; `detection` and `fuzzing` need a chat client."""
    if name in ("detection", "fuzzing"):
        if client is None:
            raise UserError(
                f"the {name} scorer needs an LLM; give {advice('--scorer-llm', '--scorer-llm', 'autointerp.scorer_llm')} as hf:<model> or openai:<model>"
            )
        cls = DetectionScorer if name == "detection" else FuzzingScorer
        return cls(client, text, threshold=threshold, seed=seed)
    if name == "embedding":
        return EmbeddingScorer(text)
    if name == "tokens":
        return TokenListScorer(text)
    raise UserError(f"unknown scorer '{name}'; choose from {', '.join(SCORERS)}")
