"""Collators: rows of numpy views -> padded torch batches. Padding happens here, per batch (dynamic:
to the longest row), never on disk; `pad_to` gives DeepSpeed-Chat's fixed width instead."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100
SFT_LOSSES = ("full", "last", "all")


def trained_tokens(row: dict, loss: str) -> np.ndarray:
    """Which tokens of a phase-1 row SFT trains on (bool per token of input_ids): every one ("full",
    DeepSpeed-Chat's), the final answer from prompt_len ("last"), or every assistant turn, from the
    shards' loss_mask ("all")."""
    if loss == "all":
        return np.asarray(row["loss_mask"], bool)
    trained = np.ones(len(row["input_ids"]), bool)
    if loss == "last":
        trained[: row["prompt_len"]] = False
    return trained


def _pad(rows: list[np.ndarray], pad_id: int, width: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = min(len(row), width)
        span = slice(width - n, width) if left else slice(0, n)
        ids[i, span] = torch.from_numpy(row[:n].astype(np.int64))
        mask[i, span] = 1
    return ids, mask


@dataclass
class SFTCollator:
    """input_ids, attention_mask, labels (-100 on padding and on the tokens `loss` leaves out: trained_tokens)."""

    pad_id: int
    pad_to: int | None = None
    loss: str = "full"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = self.pad_to or max(len(r["input_ids"]) for r in rows)
        ids, mask = _pad([r["input_ids"] for r in rows], self.pad_id, width)
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        if self.loss != "full":
            for i, row in enumerate(rows):
                skipped = ~trained_tokens(row, self.loss)[:width]
                labels[i, : len(skipped)][torch.from_numpy(skipped)] = IGNORE_INDEX
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class PairCollator:
    """DeepSpeed-Chat's layout: the B chosen rows, then the B rejected rows, in one [2B, L] batch, with
    each sequence's prompt_len (where its answer starts; the pair shares it), each pair's score
    `margin` (chosen_score - rejected_score, NaN without scores) and, for DPO with cached reference
    log-probs, each sequence's `ref_logps`."""

    pad_id: int
    pad_to: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
        width = self.pad_to or max(len(s) for s in seqs)
        ids, mask = _pad(seqs, self.pad_id, width)
        batch = {"input_ids": ids, "attention_mask": mask, "prompt_len": torch.tensor([r["prompt_len"] for r in rows] * 2)}
        return {**batch, **pair_extras(rows)}


def pair_count(batch: dict) -> int:
    """The pairs of a collated batch, padded (PairCollator: 2B rows) or packed (2B rows in its packs)."""
    return len(batch["prompt_len"]) // 2


def pair_extras(rows: list[dict]) -> dict[str, torch.Tensor]:
    """What pairs carry beside their tokens, padded or packed alike: each pair's score `margin`
    (chosen_score - rejected_score, NaN without scores) and, for DPO with cached reference log-probs,
    each sequence's `ref_logps` in the chosen-then-rejected order."""
    extras = {}
    if "chosen_score" in rows[0]:
        extras["margin"] = torch.tensor([r["chosen_score"] - r["rejected_score"] for r in rows], dtype=torch.float32)
    if "ref_logps" in rows[0]:  # (chosen, rejected) per row
        extras["ref_logps"] = torch.tensor([r["ref_logps"][0] for r in rows] + [r["ref_logps"][1] for r in rows], dtype=torch.float64)
    return extras


@dataclass
class PromptCollator:
    """Phase-3 prompts, left-padded (to the longest prompt, or to `pad_to` as DeepSpeed-Chat does)."""

    pad_id: int
    pad_to: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = self.pad_to or max(len(r["prompt_input_ids"]) for r in rows)
        ids, mask = _pad([r["prompt_input_ids"] for r in rows], self.pad_id, width, left=True)
        return {"prompt": ids, "prompt_att_mask": mask}


@dataclass
class BlockCollator:
    """Phase 3's unsupervised (PTX) blocks: equal-length rows, labels = input_ids (DeepSpeed-Chat's group_texts)."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(np.stack([r["input_ids"] for r in rows]).astype(np.int64))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
