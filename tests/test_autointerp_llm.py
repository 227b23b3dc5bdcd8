"""LLM clients: answer parsing, the disk cache, and the `openai:` client against a real HTTP server on
127.0.0.1 started here — one route serves the bundled SmolLM2 through transformers (OpenAI chat format
with log-probabilities), others fail with 500, hang past the timeout, or answer malformed text.
"""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from pydantic import SecretStr

from nullsae.autointerp.examples import Example, LatentExamples
from nullsae.autointerp.explainers import Explanation, TokenText
from nullsae.autointerp.llm import (
    ChatRequest,
    Completion,
    DiskCache,
    HFClient,
    OpenAIClient,
    OpenAIConfig,
    TokenLogprob,
    answer_probs,
    make_client,
    parse_binary_list,
)
from nullsae.autointerp.scorers import DetectionScorer
from nullsae.errors import UserError

SECRET = "sk-test-DO-NOT-LEAK-1234"


@pytest.mark.parametrize(
    "text,expect",
    [
        ("[1, 0, 1]", ([1, 0, 1], "")),
        ('Sure! ["1", 0, 1]', ([1, 0, 1], "")),
        ("1, 0, 1", ([1, 0, 1], "")),
        ("[1, 0, 1", ([1, 0, 1], "")),  # cut off by the token limit
        ("[1, 0]", (None, "wrong length")),
        ("[1, 0, 0, 1, 0, 1, 1, 2, 3, 4", (None, "wrong length")),  # ran on past its answers
        ("[1, 0, 1, 1, 0]", (None, "wrong length")),
        ("The feature is present in examples 1 and 3.", (None, "no list")),
        ("", (None, "no list")),
    ],
)
def test_parse_binary_list(text, expect):
    assert parse_binary_list(text, 3) == expect


def test_answer_probs_from_logprobs_and_fallbacks():
    lp = [
        TokenLogprob(token="[", logprob=0.0),
        TokenLogprob(token="1", logprob=math.log(0.7), top={"1": math.log(0.7), "0": math.log(0.2)}),
        TokenLogprob(token=",", logprob=0.0),
        TokenLogprob(token=" 0", logprob=math.log(0.6), top={" 0": math.log(0.6), " 1": math.log(0.3)}),
        TokenLogprob(token="]", logprob=0.0),
    ]
    probs, _ = answer_probs(Completion(text="[1, 0]", logprobs=lp), 2)
    assert probs == pytest.approx([0.7 / 0.9, 0.3 / 0.9])
    assert answer_probs(Completion(text="[1, 0]"), 2) == ([1.0, 0.0], "")  # no log-probabilities: 0/1
    assert answer_probs(Completion(error="timeout"), 2) == (None, "request failed")
    assert answer_probs(Completion(text="no idea"), 2) == (None, "no list")


def test_disk_cache_roundtrip_and_corruption(tmp_path):
    cache = DiskCache(tmp_path)
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    key = DiskCache.key("c", req)
    assert cache.get(key) is None
    cache.put(key, Completion(text="hello"))
    got = cache.get(key)
    assert got is not None and got.text == "hello" and got.cached
    assert DiskCache.key("c", req.model_copy(update={"max_tokens": 3})) != key
    next(tmp_path.rglob("*.json")).write_text("{broken")
    assert cache.get(key) is None


def test_client_spec_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="no API key"):
        make_client("openai:gpt-4o-mini")
    with pytest.raises(UserError, match="unknown LLM backend"):
        make_client("vllm:x")
    with pytest.raises(UserError, match="no model"):
        make_client("hf:")


# ----- a real OpenAI-compatible server on loopback -------------------------------------------------


class _Server:
    """ThreadingHTTPServer with routes /<mode>/v1/chat/completions; `hits` counts requests per mode."""

    def __init__(self, client: HFClient | None):
        self.client, self.hits, self.lock, self.auth = client, {}, threading.Lock(), ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                mode = self.path.strip("/").split("/")[0]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.hits[mode] = server.hits.get(mode, 0) + 1
                    n = server.hits[mode]
                server.auth = self.headers.get("Authorization", "")
                if mode == "err500" or (mode == "flaky" and n <= 2):
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if mode == "slow":
                    time.sleep(2.0)
                    return self._send(200, _chat("[1, 0, 1, 0, 1]", body))
                if mode == "prose":
                    return self._send(200, _chat("I think the feature is present in most of them.", body))
                if mode == "short":
                    return self._send(200, _chat("[1, 0]", body))
                if mode == "flaky":
                    return self._send(200, _chat("[1, 0, 1, 0, 1]", body))
                req = ChatRequest(
                    messages=body["messages"],
                    max_tokens=body.get("max_tokens", 16),
                    temperature=body.get("temperature", 0.0),
                    logprobs=bool(body.get("logprobs")),
                    top_logprobs=body.get("top_logprobs") or 5,
                )
                assert server.client is not None, "a generating route needs the server's HF client"
                with server.lock:  # one generation at a time
                    (c,) = server.client.complete([req], "serving")
                self._send(200, _chat(c.text, body, c.logprobs))

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _chat(text, body, logprobs=None):
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
    if logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "bytes": None,
                    "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in t.top.items()],
                }
                for t in logprobs
            ]
        }
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "m"),
        "choices": [choice],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


@pytest.fixture(scope="module")
def canned_server():
    s = _Server(client=None)
    yield s
    s.close()


def _client(url, tmp_path=None, **kw):
    cfg = OpenAIConfig(model="smollm2", base_url=url, api_key=SecretStr(SECRET), backoff_s=0.01, **kw)
    return OpenAIClient(cfg, cache_dir=tmp_path)


def _latent():
    toks = torch.arange(10, 42)
    pos = [Example(i, toks, torch.ones(32), quantile=0) for i in range(5)]
    neg = [Example(100 + i, toks, torch.zeros(32)) for i in range(5)]
    return LatentExamples(latent=7, n_active_windows=5, explain=pos[:2], positives=pos, negatives=neg)


class _Tok:
    """The smallest tokenizer TokenText needs: one character per id."""

    all_special_ids = [0]

    def __len__(self):
        return 64

    def batch_decode(self, ids):
        return [chr(48 + i[0]) for i in ids]

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return "".join(chr(48 + i) for i in ids if not (skip_special_tokens and i in self.all_special_ids))


def test_5xx_is_retried_then_recorded_and_the_run_goes_on(canned_server, caplog):
    client = _client(canned_server.url("err500"), max_retries=2)
    (c,) = client.complete([ChatRequest(messages=[{"role": "user", "content": "x"}])])
    assert not c.ok and c.error is not None and "InternalServerError" in c.error and canned_server.hits["err500"] == 3
    assert canned_server.auth == f"Bearer {SECRET}"  # the key is sent ...
    assert SECRET not in c.error and SECRET not in caplog.text  # ... and never logged
    (res,) = DetectionScorer(client, TokenText(_Tok())).score([(_latent(), Explanation(7, "digits"))])
    assert res.failures == {"request failed": 10} and all(math.isnan(s) for s in res.scores)

    flaky = _client(canned_server.url("flaky"), max_retries=3)
    (res,) = DetectionScorer(flaky, TokenText(_Tok())).score([(_latent(), Explanation(7, "digits"))])
    assert res.n_failed == 0 and sorted(res.scores) == [0.0] * 4 + [1.0] * 6  # recovered after two 500s


def test_timeout_is_retried_then_recorded(canned_server):
    client = _client(canned_server.url("slow"), max_retries=1, timeout_s=0.3)
    t = time.time()
    (c,) = client.complete([ChatRequest(messages=[{"role": "user", "content": "x"}])])
    assert not c.ok and c.error is not None and "Timeout" in c.error and canned_server.hits["slow"] == 2
    assert time.time() - t < 3


def test_malformed_answers_are_counted_as_failed(canned_server):
    for mode, reason in (("prose", "no list"), ("short", "wrong length")):
        (res,) = DetectionScorer(_client(canned_server.url(mode)), TokenText(_Tok())).score([(_latent(), Explanation(7, "digits"))])
        assert res.failures == {reason: 10}


@pytest.mark.slow
def test_openai_client_against_loopback_server_with_bundled_model(smollm2, tmp_path):
    server = _Server(HFClient(smollm2.model, smollm2.tokenizer, "smollm2"))
    try:
        client = _client(server.url("model"), tmp_path / "cache", concurrency=2)
        reqs = [
            ChatRequest(messages=[{"role": "user", "content": "Reply with the list [1, 0]."}], max_tokens=8, logprobs=True),
            ChatRequest(messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6),
        ]
        t = time.time()
        first = client.complete(reqs)
        print(f"loopback openai: 2 requests in {time.time() - t:.1f}s: {[c.text for c in first]}")
        assert all(c.ok and c.text for c in first)
        assert first[0].logprobs and all(lp.top for lp in first[0].logprobs) and first[1].logprobs is None
        again = client.complete(reqs)
        assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
        assert server.hits["model"] == 2  # the rerun cost nothing
        assert not any(SECRET in p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    finally:
        server.close()
