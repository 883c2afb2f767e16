"""Reward-model maths: end positions from the attention mask whatever the padding, and both losses
checked by hand (the divergence loss against DeepSpeed-Chat's definition on right padding)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.reward import end_scores, last_index, pairwise_loss


def test_last_index_right_left_and_pad_equals_eos():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_index(mask).tolist() == [2, 4, 4]
    # pad == eos == 2: the trailing real eos (mask 1) is the end, not the first id-2 token.
    values = torch.arange(15, dtype=torch.float).view(3, 5)
    assert end_scores(values, mask).tolist() == [2.0, 9.0, 14.0]


def test_last_token_loss():
    values = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.5, 0.0]])  # one pair: chosen row, rejected row
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    ids = torch.tensor([[1, 2, 0], [1, 3, 0]])
    out = pairwise_loss(values, ids, mask, kind="last")
    assert math.isclose(out["loss"].item(), -math.log(1 / (1 + math.exp(-1.5))), rel_tol=1e-6)


def test_divergence_loss_matches_deepspeed_chat_on_right_padding():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 9, 0, 0, 0]])
    mask = (ids != 0).long()
    values = torch.randn(2, 6)
    # DeepSpeed-Chat: from the first differing id to the end of the longer sequence (pad id 0, npb 0).
    div, end = 2, 4
    expected = -F.logsigmoid(values[0, div:end] - values[1, div:end]).mean()
    assert torch.allclose(pairwise_loss(values, ids, mask, kind="divergence")["loss"], expected)


def test_divergence_loss_with_left_padding_is_finite():
    ids = torch.tensor([[0, 5, 6, 7], [0, 0, 5, 9]])
    mask = (ids != 0).long()
    loss = pairwise_loss(torch.randn(2, 4), ids, mask, kind="divergence")["loss"]
    assert torch.isfinite(loss)  # DeepSpeed-Chat's pad-id search gives an empty span and NaN here (#571)
