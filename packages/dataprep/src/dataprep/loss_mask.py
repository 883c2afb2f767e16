"""Phase 1's loss_mask: which tokens belong to an assistant turn, found in token space from character
offsets (never by tokenizing pieces separately, which can give other ids at the seams).

A row's text is prompt + answer. Its assistant spans, in characters:
  * the prompt's earlier assistant turns: those a chat template's rendering recorded (the canonical
    `assistant_spans`), or else, in the HH form, each span after "\\n\\nAssistant:" up to the next
    "\\n\\nHuman:" (or the next "\\n\\nAssistant:", or the end of the prompt);
  * the final answer, whole (its EOS, appended after the text, is marked by phases.py).
A token is marked when its characters overlap a span: a token straddling a span's edge trains on its
turn (that is how prompt_len already counts a token straddling the prompt's end). Zero-width tokens
(BOS and other specials the tokenizer adds) are never marked; the byte pieces that spell one character
all have its extent (tokenizer.py), so they are marked together.

Stage 4 of prepare (tokenize), for phases.py.
"""

from __future__ import annotations

import numpy as np

HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"


def hh_spans(prompt: str) -> list[int]:
    """The assistant turns of an HH-form prompt, flat [start, end, ...] character offsets."""
    spans: list[int] = []
    at = prompt.find(HH_ASSISTANT)
    while at >= 0:
        start = at + len(HH_ASSISTANT)
        following = prompt.find(HH_ASSISTANT, start)
        ends = [e for e in (prompt.find(HH_HUMAN, start), following) if e >= 0]
        end = min(ends) if ends else len(prompt)
        if end > start:
            spans += [start, end]
        at = following
    return spans


def row_spans(prompt: str, answer: str, recorded: list[int] | None) -> np.ndarray:
    """Every assistant span of prompt + answer, as an [n, 2] array sorted by position."""
    turns = recorded if recorded is not None else hh_spans(prompt)
    return np.asarray(turns + [len(prompt), len(prompt) + len(answer)], dtype=np.int64).reshape(-1, 2)


def token_mask(offsets: list[tuple[int, int]] | np.ndarray, spans: np.ndarray) -> np.ndarray:
    """uint8 per token: 1 where its [start, end) characters overlap one of `spans` (sorted, disjoint)."""
    if len(offsets) == 0:
        return np.zeros(0, np.uint8)
    bounds = np.asarray(offsets, dtype=np.int64)
    start, end = bounds[:, 0], bounds[:, 1]
    nearest = np.searchsorted(spans[:, 1], start, side="right")  # the first span that ends after the token starts
    inside = nearest < len(spans)
    mask = np.zeros(len(bounds), np.uint8)
    mask[inside] = (spans[nearest[inside], 0] < end[inside]) & (end[inside] > start[inside])
    return mask
