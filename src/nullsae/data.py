"""Text sources -> documents -> packed, fixed-length token windows with explicit BOS handling.

The bundled source is the Wikipedia vital-article corpus (ARCHITECTURE.md); each document keeps its
title, short description and topic so that probing tasks can be built from it. Other sources: any
Hugging Face dataset (streamed) and local .txt/.jsonl/.parquet files. Documents fall into disjoint,
seeded train / eval / interp splits by a hash of their text, so splits never share a document.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nullsae import assets
from nullsae.errors import UserError, advice
from nullsae.extras import require
from nullsae.progress import progress_bar


@dataclass(frozen=True)
class Document:
    """One text with optional metadata (the bundled corpus fills title, description and topic)."""

    text: str
    title: str = ""
    description: str = ""
    topic: str = ""


def bundled_documents() -> list[Document]:
    """The 10,033 Wikipedia lead sections of the bundled corpus, in a fixed (sorted-title) order."""
    raw = json.loads(assets.wiki_corpus().read_text(encoding="utf-8"))
    docs = [
        Document(text=v.get("extract", ""), title=v.get("title", k), description=v.get("description", ""), topic=v.get("topic", ""))
        for k, v in sorted(raw.items())
    ]
    return [d for d in docs if d.text.strip()]


def pack_windows(token_lists: list[list[int]], window: int, bos_id: int | None, max_windows: int | None = None) -> Tensor:
    """Concatenate documents (each preceded by BOS when `bos_id` is given) and cut (N, window) rows.

    With a BOS id every window also starts with BOS (the model always sees a BOS at position 0,
    as in training), so each row holds window − 1 corpus tokens; a document that begins a window
    shares that BOS. The remainder is dropped.
    """
    body = window - 1 if bos_id is not None else window
    if body < 1:
        raise UserError(f"window length {window} is too short; use at least 2 tokens")
    stream: list[int] = []
    for toks in token_lists:
        # a document that starts exactly at a window start uses the window's BOS (no doubled BOS)
        if bos_id is not None and toks[:1] != [bos_id] and len(stream) % body != 0:
            stream.append(bos_id)
        stream.extend(toks)
        if max_windows is not None and len(stream) >= body * max_windows:
            break
    n = len(stream) // body
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise UserError(f"the corpus gives {len(stream)} tokens, fewer than one window of {window}; give more text or a shorter window")
    rows = torch.tensor(stream[: n * body], dtype=torch.long).view(n, body)
    if bos_id is not None:
        rows = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), rows], dim=1)
    return rows


# --- text sources -------------------------------------------------------------------------------

DEFAULT_FRACTIONS = {"train": 0.8, "eval": 0.1, "interp": 0.1}
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


def iter_documents(source: str = "bundled", text_field: str = "text") -> Iterator[Document]:
    """Documents of a text source, lazily: "bundled", "hf:DATASET[:SPLIT[:CONFIG]]" (streamed), or a local
    .txt (paragraphs separated by blank lines), .jsonl or .parquet file (column `text_field`)."""
    if source == "bundled":
        yield from bundled_documents()
    elif source.startswith("hf:"):
        yield from _hf_documents(source[3:], text_field)
    else:
        yield from _local_documents(Path(source).expanduser(), text_field)


def _local_documents(path: Path, text_field: str) -> Iterator[Document]:
    if not path.is_file():
        raise UserError(f"text source {path} does not exist; give 'bundled', 'hf:DATASET[:SPLIT]' or a .txt/.jsonl/.parquet file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            if para.strip():
                yield Document(text=para.strip())
    elif suffix == ".jsonl":
        skipped = 0
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix the line or remove it") from exc
                if not isinstance(row, dict) or text_field not in row:
                    raise UserError(f"{path}:{lineno} has no '{text_field}' field; {_field_advice()}")
                text = _text_value(row[text_field], f"{path}:{lineno}", text_field)
                if text is None:
                    skipped += 1
                else:
                    yield Document(text=text, title=str(row.get("title") or ""))
        if skipped:
            warnings.warn(f"{path}: skipped {skipped} rows whose '{text_field}' is null or empty")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise UserError(f"{path} is not a readable parquet file ({type(exc).__name__}); check the file") from exc
        if text_field not in pf.schema_arrow.names:
            raise UserError(f"{path} has no column '{text_field}' (columns: {', '.join(pf.schema_arrow.names)}); {_field_advice()}")
        for batch in pf.iter_batches(columns=[text_field]):
            for value in batch.column(0).to_pylist():
                if (text := _text_value(value, str(path), text_field)) is not None:
                    yield Document(text=text)
    else:
        raise UserError(f"unsupported text file {path.name}; use one of {', '.join(LOCAL_SUFFIXES)}")


def _field_advice() -> str:
    return advice("--text-field", "name the text field with --text-field", "give the text in a field named 'text'")


def _text_value(value: Any, where: str, text_field: str) -> str | None:
    """The text of one row, or None for a null or blank one (skipped); anything but a string is refused,
    so a number or a list is never cached as its printed form."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: field '{text_field}' holds a {type(value).__name__}, not text; give strings (or null to skip a row)")
    return value


def _hf_documents(spec: str, text_field: str) -> Iterator[Document]:
    """A Hugging Face dataset, streamed (nothing is downloaded in full): "DATASET[:SPLIT[:CONFIG]]"."""
    datasets = require("datasets", "hf")

    name, split, config = (spec.split(":") + ["", ""])[:3]
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
        rows = iter(ds)
        first = next(rows, None)
    except Exception as exc:
        raise UserError(
            f"could not open dataset '{name}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the id, the split and the network"
        ) from exc
    if first is None:
        return
    if text_field not in first:
        raise UserError(f"dataset '{name}' has no field '{text_field}' (fields: {', '.join(first)}); {_field_advice()}")
    for row in itertools.chain([first], rows):
        if (text := _text_value(row[text_field], f"dataset '{name}'", text_field)) is not None:
            yield Document(text=text)


# --- splits ---------------------------------------------------------------------------------------


def split_of(doc: Document, seed: int, fractions: dict[str, float] | None = None) -> str:
    """The split ("train", "eval" or "interp") of a document: a seeded hash of its text against the
    cumulative fractions. Works on streams, keeps the splits disjoint, and puts duplicate texts together."""
    fractions = fractions or DEFAULT_FRACTIONS
    digest = hashlib.blake2b(f"{seed}\x00{doc.text}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac
        if u < acc:
            return name
    return list(fractions)[-1]


def split_documents(docs: Iterable[Document], split: str, seed: int = 0, fractions: dict[str, float] | None = None) -> Iterator[Document]:
    """The documents of one split, in source order."""
    fractions = fractions or DEFAULT_FRACTIONS
    if split not in fractions:
        raise UserError(f"unknown split '{split}'; choose one of {', '.join(fractions)}")
    return (d for d in docs if split_of(d, seed, fractions) == split)


# --- tokenisation ---------------------------------------------------------------------------------


def token_windows(
    tokenizer: Any,
    bos_id: int | None,
    window: int,
    n_windows: int,
    source: str = "bundled",
    split: str = "train",
    seed: int = 0,
    text_field: str = "text",
    fractions: dict[str, float] | None = None,
) -> Tensor:
    """(n_windows, window) token ids of one split of a source, packed by `pack_windows`.

    BOS is explicit: documents are tokenised without special tokens, then each document and each
    window is started with `bos_id` (None: no BOS at all). Raises UserError if the split is too small.
    """
    if n_windows < 1:
        raise UserError(f"asked for {n_windows} windows; ask for at least one window of tokens")
    body = window - 1 if bos_id is not None else window
    need = body * n_windows
    token_lists: list[list[int]] = []
    have = 0
    docs = split_documents(iter_documents(source, text_field), split, seed, fractions)
    with progress_bar(total=need, desc=f"tokenising {split} split", unit="tok", leave=False, disable=need < 200_000) as bar:
        for chunk in _chunks(docs, 256):
            ids = tokenizer([d.text for d in chunk], add_special_tokens=False)["input_ids"]
            for toks in ids:
                token_lists.append(toks)
                added = len(toks)  # BOS separators come on top, so this never overcounts
                have += added
                bar.update(added)
            if have >= need:
                break
    if have < need:
        raise UserError(
            f"the {split} split of '{source}' gives {have} tokens, fewer than the {need} needed for {n_windows} windows of {window}; ask for fewer tokens or give more text"
        )
    return pack_windows(token_lists, window, bos_id, max_windows=n_windows)


def _chunks(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
