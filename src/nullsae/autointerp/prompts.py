"""Versioned prompts of the explainer and the detection / fuzzing scorers (after Paulo et al. 2024).

Change a text, or how `explainers.TokenText` renders a window → bump PROMPT_VERSION: every result row stores the version, and the run manifest
stores the texts themselves, so a score can always be traced to the exact prompt that produced it.
"""

from __future__ import annotations

import hashlib
import json

PROMPT_VERSION = "v2"

EXPLAINER_SYSTEM = (
    "You are a meticulous AI researcher studying patterns in language. You will see text examples in "
    "which one latent feature of a language model is active. The tokens where it is most active are "
    "marked <<like this>>. Find what the marked tokens, and the text around them, have in common. "
    "Be concise: one short phrase, no lists of examples. The last line of your answer must be:\n"
    "[EXPLANATION]: <your explanation>"
)

DETECTION_SYSTEM = (
    "You are an intelligent and careful linguistics researcher. You will be given the explanation of a "
    'latent feature of a language model, such as "male pronouns" or "text about sports", followed by '
    "several numbered text examples. For each example, in order, answer 1 if the feature described by "
    "the explanation is present anywhere in the example, and 0 if it is not. Reply with a Python list "
    "of 0s and 1s with one entry per example, for example [1, 0, 0] for three examples, and nothing else."
)

FUZZING_SYSTEM = (
    "You are an intelligent and careful linguistics researcher. You will be given the explanation of a "
    'latent feature of a language model, such as "male pronouns" or "text about sports", followed by '
    "several numbered text examples in which some tokens are marked <<like this>>. For each example, in "
    "order, answer 1 if the marked tokens are ones the explanation describes, and 0 if the marking is "
    "wrong. Reply with a Python list of 0s and 1s with one entry per example, for example [1, 0, 0] for "
    "three examples, and nothing else."
)


def explainer_messages(windows: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for an explanation of the latent shown in the rendered `windows`."""
    body = "\n".join(f"Example {i + 1}: {w}" for i, w in enumerate(windows))
    return [{"role": "system", "content": EXPLAINER_SYSTEM}, {"role": "user", "content": body}]


def scorer_messages(system: str, explanation: str, windows: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for one 0/1 answer per window given the explanation."""
    body = f"Explanation: {explanation}\n\nText examples:\n\n" + "\n".join(f"Example {i + 1}: {w}" for i, w in enumerate(windows))
    body += f"\n\nAnswer with a list of {len(windows)} numbers."
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]


def prompt_texts() -> dict[str, str]:
    """All prompt texts of this version (stored in every run manifest)."""
    return {"version": PROMPT_VERSION, "explainer": EXPLAINER_SYSTEM, "detection": DETECTION_SYSTEM, "fuzzing": FUZZING_SYSTEM}


def prompt_hash() -> str:
    """Short hash of the prompt texts, stored next to the version to catch edits without a bump."""
    return hashlib.sha256(json.dumps(prompt_texts(), sort_keys=True).encode()).hexdigest()[:12]
