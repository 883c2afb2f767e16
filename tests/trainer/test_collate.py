"""Collators: dynamic or fixed padding, labels masked on padding (and on what --sft_loss leaves out), the
chosen-then-rejected pair layout, left-padded prompts."""

from __future__ import annotations

import numpy as np
import torch

from trainer.collate import IGNORE_INDEX, PairCollator, PromptCollator, SFTCollator

ROWS = [{"input_ids": np.array([5, 6, 7, 8], np.uint16), "prompt_len": 2}, {"input_ids": np.array([9, 10], np.uint16), "prompt_len": 1}]


def test_sft_dynamic_padding_and_labels():
    batch = SFTCollator(pad_id=0)(ROWS)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7, 8], [9, 10, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long


def test_sft_fixed_width_and_prompt_mask():
    batch = SFTCollator(pad_id=0, pad_to=6, loss="last")(ROWS)
    assert batch["input_ids"].shape == (2, 6)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, -100, -100], [-100, 10, -100, -100, -100, -100]]


def test_sft_loss_all_trains_on_the_loss_mask():
    rows = [{**ROWS[0], "loss_mask": np.array([0, 1, 0, 1], np.uint8)}, {**ROWS[1], "loss_mask": np.array([1, 1], np.uint8)}]
    batch = SFTCollator(pad_id=0, loss="all")(rows)
    assert batch["labels"].tolist() == [[-100, 6, -100, 8], [9, 10, -100, -100]]


def test_pairs_are_chosen_then_rejected():
    rows = [{"chosen_input_ids": np.array([1, 2, 3]), "rejected_input_ids": np.array([1, 4]), "prompt_len": 1},
            {"chosen_input_ids": np.array([7]), "rejected_input_ids": np.array([7, 8, 9, 9]), "prompt_len": 0}]
    batch = PairCollator(pad_id=0)(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0], [7, 0, 0, 0], [1, 4, 0, 0], [7, 8, 9, 9]]
    assert batch["prompt_len"].tolist() == [1, 0, 1, 0] and "ref_logps" not in batch
    rows[0]["ref_logps"], rows[1]["ref_logps"] = np.array([-1.5, -2.5]), np.array([-3.0, -4.0])  # DPO's cached (chosen, rejected)
    assert PairCollator(pad_id=0)(rows)["ref_logps"].tolist() == [-1.5, -3.0, -2.5, -4.0]


def test_pairs_with_scores_carry_their_margin():
    rows = [{"chosen_input_ids": np.array([1, 2]), "rejected_input_ids": np.array([1, 3]), "prompt_len": 1, "chosen_score": 9.0, "rejected_score": 7.5},
            {"chosen_input_ids": np.array([4]), "rejected_input_ids": np.array([5]), "prompt_len": 0, "chosen_score": np.nan, "rejected_score": np.nan}]
    margin = PairCollator(pad_id=0)(rows)["margin"]
    assert margin[0].item() == 1.5 and torch.isnan(margin[1])  # NaN: the data had no scores for that pair


def test_prompts_are_left_padded():
    rows = [{"prompt_input_ids": np.array([1, 2, 3])}, {"prompt_input_ids": np.array([4, 5])}]
    batch = PromptCollator(pad_id=0, pad_to=5)(rows)
    assert batch["prompt"].tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 4, 5]]
    assert batch["prompt_att_mask"].tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
