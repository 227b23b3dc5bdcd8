"""LLM clients for explainers and scorers: in-process HF causal LMs and OpenAI-compatible endpoints.

Both return `Completion`s (text, per-token log-probabilities when the backend gives them, or an
error) and never raise for a failed item: a timeout or 5xx is retried with backoff, then recorded
as failed so the run goes on. A disk cache maps each request to its response so a rerun costs
nothing. API keys are held as `SecretStr` and never logged, cached or written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from nullsae.autointerp.config import OpenAISettings
from nullsae.errors import UserError
from nullsae.extras import require
from nullsae.io_utils import write_text
from nullsae.progress import progress_bar

log = logging.getLogger(__name__)


class ChatRequest(BaseModel):
    """One chat completion request; greedy by default so results are reproducible."""

    messages: list[dict[str, str]]
    max_tokens: int = 64
    temperature: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 5
    prefill: str = Field(default="", description="start of the answer, forced by in-process models only (chat APIs get the plain prompt)")


class TokenLogprob(BaseModel):
    """A generated token, its log-probability, and the top alternatives at that step."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(BaseModel):
    """A response, or the reason there is none (`error`)."""

    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class DiskCache:
    """Request → completion, one JSON file per key, written atomically. Failures are not cached."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    @staticmethod
    def key(client: str, request: ChatRequest) -> str:
        blob = json.dumps({"client": client, "request": request.model_dump()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return Completion.model_validate_json(path.read_text(encoding="utf-8")).model_copy(update={"cached": True})
        except ValueError:
            return None  # a corrupt entry is recomputed

    def put(self, key: str, completion: Completion) -> None:
        write_text(self._path(key), completion.model_dump_json(exclude={"cached"}))


class LLMClient(ABC):
    """A chat model: `complete` answers a list of requests, from the cache where possible."""

    name: str
    progress: bool = True  # show a progress bar over uncached requests

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache = DiskCache(cache_dir) if cache_dir else None

    def complete(self, requests: list[ChatRequest], desc: str = "LLM requests") -> list[Completion]:
        """Completions in request order; each fresh success is cached as soon as it arrives."""
        out: list[Completion | None] = [None] * len(requests)
        keys = [DiskCache.key(self.name, r) for r in requests]
        todo = []
        for i, k in enumerate(keys):
            hit = self.cache.get(k) if self.cache else None
            if hit is not None:
                out[i] = hit
            else:
                todo.append(i)

        def done(j: int, c: Completion) -> None:
            out[todo[j]] = c
            if self.cache and c.ok:
                self.cache.put(keys[todo[j]], c)

        if todo:
            self._complete([requests[i] for i in todo], desc, done)
        answered = [c for c in out if c is not None]
        assert len(answered) == len(requests), "every request gets a completion (an error one when it failed)"
        return answered

    @abstractmethod
    def _complete(self, requests: list[ChatRequest], desc: str, done: Callable[[int, Completion], None]) -> None:
        """Answer uncached requests, calling `done(index, completion)` for each; never raise for one item."""


class HFClient(LLMClient):
    """A transformers causal LM run in-process: greedy batched generation with exact log-probabilities."""

    def __init__(self, model: Any, tokenizer: Any, name: str, batch_size: int = 4, cache_dir: str | Path | None = None):
        super().__init__(cache_dir)
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, f"hf:{name}", batch_size
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(f"model '{name}' has no chat template; use an instruct/chat model for the explainer and scorers")

    @classmethod
    def from_spec(cls, spec: str, cache_dir: str | Path | None = None, batch_size: int = 4) -> HFClient:
        """`smollm2` (the bundled instruct model), a hub id or a local folder, through `nullsae.models`;
        on a GPU when there is one (bfloat16), else on the CPU (float32)."""
        import torch

        from nullsae.models import load_model

        cuda = torch.cuda.is_available()
        loaded = load_model(spec, dtype=torch.bfloat16 if cuda else torch.float32)
        if cuda:
            loaded.model.to("cuda")
        return cls(loaded.model, loaded.tokenizer, spec, batch_size=batch_size * (8 if cuda else 1), cache_dir=cache_dir)

    def _complete(self, requests: list[ChatRequest], desc: str, done: Callable[[int, Completion], None]) -> None:
        order = sorted(range(len(requests)), key=lambda i: (requests[i].max_tokens, requests[i].logprobs))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in progress_bar(batches, desc=desc, unit="batch", leave=False, disable=not self.progress):
            try:
                for i, c in zip(batch, self._generate([requests[i] for i in batch])):
                    done(i, c)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory: record, keep going
                for i in batch:
                    done(i, Completion(error=f"{type(exc).__name__}: {str(exc)[:200]}"))

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        tok, model = self.tokenizer, self.model
        prompts = [tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True) for r in requests]
        prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
        prompts = [p + (tok(r.prefill, add_special_tokens=False)["input_ids"] if r.prefill else []) for p, r in zip(prompts, requests)]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(p) for p in prompts)
        device = next(model.parameters()).device
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        max_new = max(r.max_tokens for r in requests)
        want_logprobs = any(r.logprobs for r in requests)
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                output_scores=want_logprobs,
                return_dict_in_generate=True,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        new = gen.sequences[:, width:].cpu()
        logp = torch.stack(gen.scores, dim=1).float().log_softmax(-1).cpu() if want_logprobs and gen.scores else None  # (B, S, V)
        eos = model.generation_config.eos_token_id
        stop = {tok.eos_token_id, pad} | set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        out = []
        for b, r in enumerate(requests):
            seq = new[b, : r.max_tokens].tolist()
            n = next((i for i, t in enumerate(seq) if t in stop), len(seq))
            seq = seq[:n]
            lps = None
            if r.logprobs and logp is not None:
                lps = []
                for s, t in enumerate(seq):
                    top_v, top_i = logp[b, s].topk(r.top_logprobs)
                    top: dict[str, float] = {}
                    for v, i in zip(top_v.tolist(), top_i.tolist()):
                        text = tok.decode([i])
                        top[text] = max(top.get(text, -math.inf), v)
                    lps.append(TokenLogprob(token=tok.decode([t]), logprob=float(logp[b, s, t]), top=top))
            if lps is not None and r.prefill:
                lps.insert(0, TokenLogprob(token=r.prefill, logprob=0.0))
            out.append(Completion(text=r.prefill + tok.decode(seq, skip_special_tokens=True), logprobs=lps))
        return out


class OpenAIConfig(OpenAISettings):
    """An OpenAI-compatible chat endpoint (vLLM, llama.cpp, `transformers serve`, OpenAI, OpenRouter)."""

    model: str
    api_key: SecretStr | None = Field(default=None, description="key; default: the environment variable api_key_env")
    api_key_env: str = "OPENAI_API_KEY"


class OpenAIClient(LLMClient):
    """Chat completions over HTTP with a concurrency limit, retries with backoff and timeouts."""

    def __init__(self, cfg: OpenAIConfig, cache_dir: str | Path | None = None):
        openai = require("openai", "llm")

        super().__init__(cache_dir)
        self.cfg = cfg
        self.name = f"openai:{cfg.model}@{cfg.base_url or os.environ.get('OPENAI_BASE_URL', 'default')}"
        key = cfg.api_key.get_secret_value() if cfg.api_key else os.environ.get(cfg.api_key_env)
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        if not key and not base_url:
            raise UserError(f"no API key for openai:{cfg.model}; set ${cfg.api_key_env} or give a base URL of a local server")
        self._secret = key or ""
        self._client = openai.OpenAI(base_url=base_url, api_key=key or "none", timeout=cfg.timeout_s, max_retries=0)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _one(self, req: ChatRequest) -> Completion:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        }
        if req.logprobs:
            kwargs |= {"logprobs": True, "top_logprobs": req.top_logprobs}
        error = ""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                resp = self._client.chat.completions.create(**kwargs)
                choice = resp.choices[0]
                lps = None
                content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
                if content:
                    lps = [
                        TokenLogprob(token=c.token, logprob=c.logprob, top={t.token: t.logprob for t in (c.top_logprobs or [])})
                        for c in content
                    ]
                return Completion(text=choice.message.content or "", logprobs=lps)
            except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
                error = f"{type(exc).__name__}: {self._scrub(str(exc))[:200]}"
            except openai.APIStatusError as exc:  # other 4xx: retrying cannot help
                return Completion(error=f"{type(exc).__name__} {exc.status_code}: {self._scrub(str(exc))[:200]}")
            except (IndexError, AttributeError, ValueError) as exc:  # a malformed response body
                return Completion(error=f"malformed response: {type(exc).__name__}")
            if attempt < self.cfg.max_retries:
                time.sleep(self.cfg.backoff_s * 2**attempt * (0.5 + random.random()))
        log.warning("request failed after %d attempts: %s", self.cfg.max_retries + 1, error)
        return Completion(error=error)

    def _complete(self, requests: list[ChatRequest], desc: str, done: Callable[[int, Completion], None]) -> None:
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
            for fut in progress_bar(as_completed(futures), total=len(futures), desc=desc, leave=False, disable=not self.progress):
                done(futures[fut], fut.result())


def make_client(spec: str, cache_dir: str | Path | None = None, **openai_options: Any) -> LLMClient:
    """`hf:<model>` or `openai:<model>` → a client; options fill `OpenAIConfig` (base_url, api_key, …)."""
    kind, _, model = spec.partition(":")
    if not model:
        raise UserError(f"LLM spec '{spec}' has no model; write hf:<model> or openai:<model>")
    if kind == "hf":
        return HFClient.from_spec(model, cache_dir=cache_dir)
    if kind == "openai":
        return OpenAIClient(OpenAIConfig(model=model, **openai_options), cache_dir=cache_dir)
    raise UserError(f"unknown LLM backend '{kind}' in '{spec}'; use hf:<model> or openai:<model>")


_LIST = re.compile(r"\[([^\[\]]*)\]")
_ITEM = re.compile(r"""^\s*["']?([01])["']?\s*$""")


def _bits(parts: list[str]) -> list[int] | None:
    """The 0/1 values of the list items `parts`, or None unless every one is a 0/1 item."""
    values = []
    for part in parts:
        item = _ITEM.match(part)
        if item is None:
            return None
        values.append(int(item.group(1)))
    return values or None


def parse_binary_list(text: str, n: int) -> tuple[list[int] | None, str]:
    """The answer list of a scorer: the first bracketed list of n 0/1 items (a last list cut off by
    the token limit counts when all n items are there), or a bare `1, 0, …`.

    Returns (values, "") or (None, reason) with reason one of "wrong length", "no list".
    """
    wrong = False
    for match in _LIST.finditer(text):
        values = _bits(match.group(1).split(","))
        if values is not None:
            if len(values) == n:
                return values, ""
            wrong = True
    tail = re.search(r"\[([^\[\]]*)$", text)  # a list cut off by the token limit
    if tail:
        parts = tail.group(1).rstrip(", ").split(",")
        values = _bits(parts)
        if values is not None and len(values) == n:
            return values, ""
        wrong = wrong or bool(_ITEM.match(parts[0]))  # a list that ran on past its n answers
    bare = re.fullmatch(r"\s*([01](?:\s*[,\s]\s*[01])*)\s*\.?\s*", text)
    if bare:
        vals = [int(c) for c in re.findall(r"[01]", bare.group(1))]
        if len(vals) == n:
            return vals, ""
        wrong = True
    return None, "wrong length" if wrong else "no list"


def answer_probs(completion: Completion, n: int) -> tuple[list[float] | None, str]:
    """Per-item P("1") / (P("1") + P("0")) from log-probabilities, else the parsed 0/1 answers.

    The digits of the parsed list are matched, in order, to the generated tokens whose text is
    "0" or "1"; when that alignment fails, the 0/1 answers are used as they are.
    """
    if not completion.ok:
        return None, "request failed"
    values, reason = parse_binary_list(completion.text, n)
    if values is None:
        return None, reason
    if not completion.logprobs:
        return [float(v) for v in values], ""
    digits = [lp for lp in completion.logprobs if lp.token.strip() in ("0", "1")]
    start = next((i for i in range(len(digits) - n + 1) if [int(d.token.strip()) for d in digits[i : i + n]] == values), None)
    if start is None:
        return [float(v) for v in values], ""
    probs = []
    for d, v in zip(digits[start : start + n], values):
        alts = dict(d.top)
        alts.setdefault(d.token, d.logprob)
        p1 = sum(math.exp(lp) for t, lp in alts.items() if t.strip() == "1")
        p0 = sum(math.exp(lp) for t, lp in alts.items() if t.strip() == "0")
        probs.append(p1 / (p1 + p0) if p1 + p0 > 0 else float(v))
    return probs, ""
