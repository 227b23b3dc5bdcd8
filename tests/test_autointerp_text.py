"""Prompt text of auto-interpretability: windows decoded whole, so a character split across byte-level tokens
reaches the explainer and scorers as itself, with the marks on the characters of the marked tokens."""

from __future__ import annotations

import pytest
import torch
from runner_helpers import tiny_model_dir, tiny_tokenizer

from nullsae.autointerp import prompts
from nullsae.autointerp.examples import Example, LatentExamples
from nullsae.autointerp.explainers import LLMExplainer, TokenText, marks
from nullsae.autointerp.llm import ChatRequest, DiskCache, HFClient

WORD = "Ōmikami"
SENTENCE = f"The sun goddess Amaterasu {WORD} rules.\nShe shines."


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _window(tok):
    """BOS + the sentence's ids, the tokens carrying part of "Ō" (one by one they decode to "�"), and the
    tokens of the word."""
    ids = [tok.bos_token_id, *tok.encode(SENTENCE, add_special_tokens=False)]
    pieces = [tok.decode([i]) for i in ids]
    carriers = [i for i, p in enumerate(pieces) if "\ufffd" in p]
    assert len(carriers) >= 2  # the tokenizer splits the character: the case under test
    start = SENTENCE.index(WORD)
    word = [i for i in range(1, len(ids)) if len(tok.decode(ids[1:i])) < start + len(WORD) and len(tok.decode(ids[1 : i + 1])) > start]
    return torch.tensor(ids), carriers, word


def test_a_window_renders_as_its_whole_string(tok):
    ids, carriers, _ = _window(tok)
    text = TokenText(tok)
    assert "\ufffd" in "".join(text.strings[i] for i in ids.tolist())  # token by token, "Ō" is lost
    assert text.render(ids) == SENTENCE.replace("\n", "\\n")  # one prompt line, the character whole
    assert not text.visible(ids)[0] and bool(text.visible(ids)[1:].all())  # BOS shows nothing


def test_marks_go_on_the_characters_of_the_marked_tokens(tok):
    ids, carriers, word = _window(tok)
    text = TokenText(tok)
    only_last = torch.zeros(len(ids), dtype=torch.bool)
    only_last[carriers[-1]] = True  # the token that completes "Ō": the character is marked whole
    out = text.render(ids, only_last)
    assert "<<Ō" in out and "\ufffd" not in out and out.replace("<<", "").replace(">>", "") == SENTENCE.replace("\n", "\\n")
    whole = torch.zeros(len(ids), dtype=torch.bool)
    whole[word] = True
    assert f"<<{WORD}" in text.render(ids, whole) or f"<< {WORD}" in text.render(ids, whole)
    cut = ids[: carriers[0] + 1]  # the window ends inside the character: its bytes show nothing
    assert "\ufffd" not in text.render(cut, torch.ones(len(cut), dtype=torch.bool))
    assert not bool(text.visible(cut)[-1])


def test_the_explainer_prompt_holds_the_character(tok, tmp_path):
    """A real chat model (a tiny Llama with a chat template) receives the windows; the disk cache holds the
    request built from the whole-string rendering, so that is exactly what the explainer sent."""
    from transformers import AutoModelForCausalLM

    ids, _, word = _window(tok)
    acts = torch.zeros(len(ids))
    acts[word] = torch.linspace(1.0, 2.0, len(word))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(tmp_path / "model"))
    chat_tok = tiny_tokenizer()
    chat_tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    client = HFClient(model, chat_tok, "tiny", cache_dir=tmp_path / "cache")
    client.progress = False
    ex = Example(0, ids, acts)
    latent = LatentExamples(latent=3, n_active_windows=1, explain=[ex], positives=[ex], negatives=[])
    (expl,) = LLMExplainer(client, TokenText(tok), threshold=0.3, max_tokens=4).explain([latent])
    assert expl.error is None or expl.error == "empty explanation"
    shown = TokenText(tok).render(ids, marks(ex, 0.3))
    assert WORD[0] in shown and "\ufffd" not in shown
    sent = ChatRequest(messages=prompts.explainer_messages([shown]), max_tokens=4)
    assert DiskCache(tmp_path / "cache").get(DiskCache.key(client.name, sent)) is not None
