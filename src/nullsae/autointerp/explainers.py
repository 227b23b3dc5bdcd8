"""Explainers: turn a latent's top examples into a one-line explanation (docs/spec.md#autointerp).

`tokens` is the no-LLM baseline (the most-activating token strings); `hf:<model>` and
`openai:<model>` ask a chat model with the versioned prompt of `prompts.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nullsae.autointerp import prompts
from nullsae.autointerp.examples import Example, LatentExamples
from nullsae.autointerp.llm import ChatRequest, LLMClient, make_client
from nullsae.errors import UserError
from nullsae.text_spans import decode_with_offsets

TOKENS_PREFIX = "tokens: "


class TokenText:
    """Token windows as prompt text. A window is decoded whole (`nullsae.text_spans`), so a character split
    across tokens shows as itself, and marks go on the characters of the marked tokens; newlines show as a
    visible \\n so that every window stays on one prompt line. `strings` holds each token id's own text, for
    the token-level `tokens` explainer and scorer (special tokens empty)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        vocab = len(tokenizer)
        self.strings = [s.replace("\n", "\\n") for s in tokenizer.batch_decode([[i] for i in range(vocab)])]  # one line per window
        for i in getattr(tokenizer, "all_special_ids", []):
            if i < vocab:
                self.strings[i] = ""

    def render(self, tokens: Tensor, marked: Tensor | None = None) -> str:
        """The window's text; runs of characters of marked tokens wrapped in <<…>>."""
        text, spans = decode_with_offsets(self.tokenizer, tokens.tolist())
        on = [False] * len(text)
        for (a, b), m in zip(spans, marked.tolist() if marked is not None else []):
            if m:
                on[a:b] = [True] * (b - a)
        out, open_ = [], False
        for ch, m in zip(text, on):
            if m != open_:
                out.append("<<" if m else ">>")
                open_ = m
            out.append("\\n" if ch == "\n" else ch)
        if open_:
            out.append(">>")
        return "".join(out)

    def visible(self, tokens: Tensor) -> Tensor:
        """Per token, whether it shows any character of the rendered window (special tokens and bytes of a
        character cut by the window's edge show none)."""
        _, spans = decode_with_offsets(self.tokenizer, tokens.tolist())
        return torch.tensor([b > a for a, b in spans], dtype=torch.bool)


def marks(example: Example, threshold: float) -> Tensor:
    """Tokens whose activation is at least `threshold` × the window's max (and nonzero)."""
    return (example.acts > 0) & (example.acts >= threshold * example.acts.max())


@dataclass
class Explanation:
    """An explanation, or the reason there is none."""

    latent: int
    text: str | None
    error: str | None = None
    raw: str = ""


class TokensExplainer:
    """The most-activating token strings: marked-token activation mass per token id, largest first,
    kept until `mass` of the total is covered (at most `max_tokens`)."""

    name = "tokens"

    def __init__(self, text: TokenText, threshold: float = 0.3, mass: float = 0.9, max_tokens: int = 10):
        self.text, self.threshold, self.mass, self.max_tokens = text, threshold, mass, max_tokens

    def top_tokens(self, ex: LatentExamples) -> list[int]:
        ids, weights = [], []
        for e in ex.explain:
            m = marks(e, self.threshold)
            ids.append(e.tokens[m])
            weights.append(e.acts[m])
        if not ids:
            return []
        mass = torch.zeros(max(len(self.text.strings), int(torch.cat(ids).max()) + 1)).index_add_(0, torch.cat(ids), torch.cat(weights))
        order = mass.argsort(descending=True)
        share = mass[order].cumsum(0) / mass.sum().clamp_min(1e-12)
        n = min(self.max_tokens, int((share < self.mass).sum()) + 1, int((mass > 0).sum()))
        return order[:n].tolist()

    def explain(self, examples: list[LatentExamples]) -> list[Explanation]:
        out = []
        for ex in examples:
            toks = [self.text.strings[t] for t in self.top_tokens(ex)]
            toks = list(dict.fromkeys(s for s in toks if s))
            if toks:
                out.append(Explanation(ex.latent, TOKENS_PREFIX + json.dumps(toks, ensure_ascii=False)))
            else:
                out.append(Explanation(ex.latent, None, error="no marked tokens"))
        return out


def parse_token_list(explanation: str) -> list[str] | None:
    """The token strings of a `tokens` explanation, or None for any other explanation."""
    if not explanation.startswith(TOKENS_PREFIX):
        return None
    try:
        toks = json.loads(explanation[len(TOKENS_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return [t for t in toks if isinstance(t, str)] if isinstance(toks, list) else None


class LLMExplainer:
    """Ask a chat model for an explanation from `n_explain` marked windows (prompt `prompts.PROMPT_VERSION`)."""

    def __init__(self, client: LLMClient, text: TokenText, threshold: float = 0.3, max_tokens: int = 60):
        self.client, self.text, self.threshold, self.max_tokens = client, text, threshold, max_tokens
        self.name = client.name

    def explain(self, examples: list[LatentExamples]) -> list[Explanation]:
        reqs = [
            ChatRequest(
                messages=prompts.explainer_messages([self.text.render(e.tokens, marks(e, self.threshold)) for e in ex.explain]),
                max_tokens=self.max_tokens,
            )
            for ex in examples
        ]
        out = []
        for ex, c in zip(examples, self.client.complete(reqs, desc="explaining")):
            if not c.ok:
                out.append(Explanation(ex.latent, None, error=c.error, raw=c.text))
                continue
            text = parse_explanation(c.text)
            out.append(Explanation(ex.latent, text, error=None if text else "empty explanation", raw=c.text))
        return out


def parse_explanation(raw: str) -> str | None:
    """The text after `[EXPLANATION]:`, else the last non-empty line; at most 300 characters."""
    marker = raw.rfind("[EXPLANATION]:")
    text = raw[marker + len("[EXPLANATION]:") :] if marker >= 0 else raw
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    line = lines[0] if marker >= 0 else lines[-1]
    return line[:300] or None


def make_explainer(
    spec: str, text: TokenText, threshold: float = 0.3, client: LLMClient | None = None, cache_dir: str | None = None, **llm_options: Any
):
    """`tokens`, `hf:<model>` or `openai:<model>` → an explainer (an existing `client` may be reused)."""
    if spec == "tokens":
        return TokensExplainer(text, threshold=threshold)
    if spec.startswith(("hf:", "openai:")):
        return LLMExplainer(client or make_client(spec, cache_dir=cache_dir, **llm_options), text, threshold=threshold)
    raise UserError(f"unknown explainer '{spec}'; use tokens, hf:<model> or openai:<model>")
