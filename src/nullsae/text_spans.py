"""Example windows decoded as whole strings, with each token's character span, so that a character split
across tokens (a multi-byte "Ō" as two byte-level tokens) renders as itself and not as two "�"."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

REPLACEMENT = "\ufffd"  # what a decoder yields for the bytes of an incomplete character


def decode_with_offsets(tokenizer: Any, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The window decoded in one piece, and per token the (start, end) of the characters it contributes to.

    A token holding only part of a character's bytes spans that whole character, as does the token that
    completes it (the two spans share it); special tokens (BOS) span nothing. Bytes of a character cut by
    the window's edges decode to nothing (their tokens span nothing there).
    """
    text, spans = _offsets(tokenizer, [int(i) for i in token_ids])
    lead = len(text) - len(text.lstrip(REPLACEMENT))
    kept = text.strip(REPLACEMENT)
    return kept, [(min(max(a - lead, 0), len(kept)), min(max(b - lead, 0), len(kept))) for a, b in spans]


def _offsets(tokenizer: Any, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """decode_with_offsets before the window's cut characters are dropped."""
    text = _decode(tokenizer, ids)
    spans: list[tuple[int, int]] = []
    done = 0  # characters of `text` complete after the tokens so far
    for i in range(len(ids)):
        prefix = text if i == len(ids) - 1 else _decode(tokenizer, ids[: i + 1])
        stable = prefix.rstrip(REPLACEMENT) if i < len(ids) - 1 else prefix
        end = max(done, len(os.path.commonprefix([stable, text])))
        partial = len(stable) < len(prefix) and end < len(text)  # bytes of a character the next tokens complete
        spans.append((done, end + 1 if partial else end))
        done = end
    return text, spans


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def token_pieces(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """Per token, the characters it shows when the window is drawn token by token from its whole-string
    decoding: the pieces join to the decoded text, and a character split across tokens goes, whole, to the
    first token that carries part of it. Newlines show as a visible \\n, so that a window stays on one line."""
    text, spans = decode_with_offsets(tokenizer, token_ids)
    pieces, shown = [], 0
    for _, end in spans:
        pieces.append(text[shown : max(shown, end)].replace("\n", "\\n"))
        shown = max(shown, end)
    return pieces
