"""Text sources, disjoint seeded splits, and packing into windows with explicit BOS."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from nullsae.data import Document, bundled_documents, iter_documents, pack_windows, split_documents, split_of, token_windows
from nullsae.errors import UserError


class CharTokenizer:
    """A real (if simple) tokenizer: one id per character, offset past the special ids 0..2."""

    def __call__(self, texts, add_special_tokens=True):
        assert add_special_tokens is False  # BOS is handled by nullsae, never by the tokenizer
        return {"input_ids": [[3 + (ord(c) % 90) for c in t] for t in texts]}


def test_pack_windows_bos_at_every_window_and_document():
    rows = pack_windows([[5, 6], [8, 9, 10, 11]], window=4, bos_id=1)
    # stream 5 6 BOS 8 9 10 11, cut into bodies of 3, each led by BOS; the first document shares the window BOS
    assert rows.tolist() == [[1, 5, 6, 1], [1, 8, 9, 10]]
    # a document that starts a window shares its BOS too: never two BOS in a row
    assert pack_windows([[5, 6, 7], [8, 9, 10]], window=4, bos_id=1).tolist() == [[1, 5, 6, 7], [1, 8, 9, 10]]
    assert pack_windows([[5, 6, 7], [8, 9]], window=3, bos_id=None).tolist() == [[5, 6, 7]]
    with pytest.raises(UserError, match="fewer than one window"):
        pack_windows([[5]], window=8, bos_id=1)


def test_splits_are_disjoint_seeded_and_sized():
    docs = bundled_documents()[:3000]
    parts = {s: list(split_documents(docs, s, seed=3)) for s in ("train", "eval", "interp")}
    texts = {s: {d.text for d in p} for s, p in parts.items()}
    assert not texts["train"] & texts["eval"] and not texts["train"] & texts["interp"] and not texts["eval"] & texts["interp"]
    assert sum(len(p) for p in parts.values()) == len(docs)
    assert 0.75 < len(parts["train"]) / len(docs) < 0.85 and 0.07 < len(parts["eval"]) / len(docs) < 0.13
    assert [d.text for d in split_documents(docs, "eval", seed=3)] == [d.text for d in parts["eval"]]
    assert [d.text for d in split_documents(docs, "eval", seed=4)] != [d.text for d in parts["eval"]]
    assert split_of(Document("same text"), 3) == split_of(Document("same text", title="other"), 3)
    with pytest.raises(UserError, match="unknown split"):
        list(split_documents(docs, "test"))


def test_local_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\n\nsecond one\n")
    assert [d.text for d in iter_documents(str(tmp_path / "a.txt"))] == ["first paragraph\nstill first", "second one"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x y"}) + "\n\n" + json.dumps({"body": "z"}) + "\n")
    assert [d.text for d in iter_documents(str(tmp_path / "b.jsonl"), text_field="body")] == ["x y", "z"]
    with pytest.raises(UserError, match="no 'text' field"):
        list(iter_documents(str(tmp_path / "b.jsonl")))
    pd.DataFrame({"text": ["p1", "", "p3"]}).to_parquet(tmp_path / "c.parquet")
    assert [d.text for d in iter_documents(str(tmp_path / "c.parquet"))] == ["p1", "p3"]
    with pytest.raises(UserError, match="no column 'body'"):
        list(iter_documents(str(tmp_path / "c.parquet"), text_field="body"))
    (tmp_path / "d.csv").write_text("a,b")
    with pytest.raises(UserError, match="unsupported"):
        list(iter_documents(str(tmp_path / "d.csv")))
    with pytest.raises(UserError, match="does not exist"):
        list(iter_documents(str(tmp_path / "missing.txt")))


def test_token_windows_and_small_corpus(tmp_path):
    tok = CharTokenizer()
    w = token_windows(tok, bos_id=1, window=16, n_windows=20, split="interp", seed=0)
    assert w.shape == (20, 16) and (w[:, 0] == 1).all() and w.dtype == torch.long
    assert torch.equal(w, token_windows(tok, bos_id=1, window=16, n_windows=20, split="interp", seed=0))
    train = token_windows(tok, bos_id=1, window=16, n_windows=20, split="train", seed=0)
    assert not torch.equal(w, train)
    (tmp_path / "small.txt").write_text("only a few characters here\n")
    with pytest.raises(UserError, match="fewer than the"):
        token_windows(tok, bos_id=1, window=16, n_windows=100, source=str(tmp_path / "small.txt"), split="train", fractions={"train": 1.0})
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="gives 0 tokens"):
        token_windows(tok, bos_id=1, window=16, n_windows=1, source=str(tmp_path / "empty.txt"))


def test_hf_dataset_offline_is_a_clear_error():
    """Offline (tests/conftest.py sets HF_HUB_OFFLINE before the libraries load), a dataset missing from the cache is one error."""
    with pytest.raises(UserError, match="could not open dataset"):
        next(iter_documents("hf:nobody-xyz/no-such-dataset-123"))


def test_hf_dataset_is_streamed_through_datasets(tmp_path):
    """A dataset folder read by `datasets.load_dataset(..., streaming=True)`, offline: the hub path minus the network."""
    folder = tmp_path / "my-dataset"
    folder.mkdir()
    rows = [{"body": f"Document number {i} about topic {i % 7}.", "id": i} for i in range(50)] + [{"body": "  ", "id": 50}]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "test.jsonl").write_text(json.dumps({"body": "held out", "id": 0}) + "\n")
    docs = list(iter_documents(f"hf:{folder}", text_field="body"))
    assert [d.text for d in docs] == [r["body"] for r in rows[:50]]
    assert [d.text for d in iter_documents(f"hf:{folder}:test", text_field="body")] == ["held out"]
    with pytest.raises(UserError, match="has no field 'text'"):
        next(iter_documents(f"hf:{folder}"))
