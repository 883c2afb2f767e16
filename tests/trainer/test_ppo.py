"""Phase 3 maths against hand-computed values (dschat.md 4.2, with our reward placement)."""

from __future__ import annotations

import copy

import pytest
import torch

from trainer import ppo
from trainer.ema import EMA


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_answer_mask_keeps_the_first_eos_and_nothing_after():
    eos = 0
    answers = torch.tensor([[5, 0, 1, 1], [5, 6, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]])
    assert ppo.answer_mask(answers, eos).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_positions_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert ppo.positions(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


def test_reward_lands_on_the_last_real_action():
    # Two answer tokens then EOS (3 real actions), then one pad.
    mask = t([1, 1, 1, 0])
    logprobs, ref = t([-1.0, -2.0, -0.5, -3.0]), t([-1.5, -2.0, -1.0, -0.1])
    rewards = ppo.shaped_rewards(logprobs, ref, torch.tensor([7.0]), mask, kl_ctl=0.1, clip_reward_value=5.0)
    # -0.1 * (logp - ref) on real actions; the score, clipped to 5, on index 2 (the EOS action).
    # DeepSpeed-Chat would add it at index 3, which its mask excludes.
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 4.95, 0.0])


def test_reward_of_a_row_without_actions_is_zero():
    rewards = ppo.shaped_rewards(t([-1.0, -1.0]), t([0.0, 0.0]), torch.tensor([3.0]), t([0, 0]), 0.1, 5.0)
    assert rewards.tolist() == [[0.0, 0.0]]


def test_gae_matches_a_hand_computed_example():
    mask = t([1, 1, 1, 0])
    rewards = t([-0.05, 0.0, 4.95, 0.0])
    values = t([0.5, 1.0, 2.0, 9.0])  # the 9.0 is past the end: ignored
    advantages, returns = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # t=2: 4.95 + 0 - 2.0 = 2.95 (the episode ends: no bootstrap)
    # t=1: (0 + 2.0 - 1.0) + 0.95 * 2.95 = 3.8025
    # t=0: (-0.05 + 1.0 - 0.5) + 0.95 * 3.8025 = 4.062375
    assert advantages[0].tolist() == pytest.approx([4.062375, 3.8025, 2.95, 0.0])
    assert returns[0].tolist() == pytest.approx([4.562375, 4.8025, 4.95, 0.0])


def test_gae_with_discount():
    advantages, _ = ppo.gae(t([1.0, 2.0]), t([0.5, 0.25]), t([1, 1]), gamma=0.5, lam=0.5)
    # t=1: 2 - 0.25 = 1.75;  t=0: (1 + 0.5 * 0.25 - 0.5) + 0.25 * 1.75 = 1.0625
    assert advantages[0].tolist() == pytest.approx([1.0625, 1.75])


def test_actor_loss_clips_pessimistically():
    mask = t([1, 1, 1, 0])
    advantages = t([1.0, 1.0, -2.0, 5.0])
    old = t([0.0, 0.0, 0.0, 0.0])
    new = torch.log(t([1.5, 0.5, 1.5, 9.0]))
    loss, clipped = ppo.actor_loss(new, old, advantages, mask, cliprange=0.2)
    # ratio 1.5, A=1: max(-1.5, -1.2) = -1.2 (clipped); ratio 0.5, A=1: max(-0.5, -0.8) = -0.5;
    # ratio 1.5, A=-2: max(3.0, 2.4) = 3.0; the masked position does not count.
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 3.0) / 3)
    assert clipped.item() == pytest.approx(1 / 3)


def test_critic_loss_clips_the_value_change():
    loss, clipped = ppo.critic_loss(t([3.0, 1.0]), t([1.0, 1.0]), t([3.0, 2.0]), t([1, 1]), cliprange_value=0.2)
    # row 0: v moved 1 -> 3, clipped to 1.2: max(0, 1.8^2) = 3.24; row 1: max(1, 1) = 1
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)
    assert clipped.item() == pytest.approx(0.5)


def test_whiten_over_masked_entries():
    x = ppo.whiten(t([1.0, 2.0, 3.0, 100.0]), t([1, 1, 1, 0]))
    assert x[0, :3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (x[0, :3] ** 2).mean().item() == pytest.approx(1.0, rel=1e-5)
    assert x[0, 3].item() == 0.0


def test_ema_update_is_a_lerp():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(t([1.0, 2.0]))
    ema = EMA(copy.deepcopy(model), beta=0.992)  # the EMA keeps the module it is given: a copy
    with torch.no_grad():
        model.weight.copy_(t([3.0, -2.0]))
    ema.update(model)
    assert ema.model.weight[0].tolist() == pytest.approx([0.992 * 1 + 0.008 * 3, 0.992 * 2 - 0.008 * 2])
    assert not ema.model.weight.requires_grad


def test_an_overflow_at_a_masked_position_does_not_poison_the_actor_loss():
    # Position 1 is masked out; its log-ratio (1000) would overflow exp and give 0 * inf = NaN.
    logprobs, old = t([-1.0, 500.0]), t([-1.2, -500.0])
    advantages, mask = t([1.0, 0.0]), t([1, 0])
    loss, clipfrac = ppo.actor_loss(logprobs, old, advantages, mask, cliprange=0.2)
    # The real position: ratio exp(0.2) = 1.221 is clipped to 1.2, and max(-1.221, -1.2) = -1.2.
    assert loss.item() == pytest.approx(-1.2) and clipfrac.item() == 1.0


def test_a_huge_log_ratio_at_a_real_position_stays_finite():
    loss, _ = ppo.actor_loss(t([100.0]), t([-100.0]), t([-1.0]), t([1]), cliprange=0.2)
    assert torch.isfinite(loss)

