"""Phase 3's maths: the answer mask, KL-shaped rewards, GAE, and the PPO actor and critic losses.

Every function works on answer-aligned [B, A] tensors: column i is the i-th generated token (the
i-th action). For a sequence [prompt (Lp, left-padded) | answer (A)], the log-prob of action i is
logits[:, Lp - 1 + i] scored at token Lp + i, and its value is the critic's output at Lp - 1 + i
(the state before the action). `mask` marks the real actions: the generated tokens up to and
including the first EOS (EOS is an action too: it is how the model learns to stop).

Where this differs from DeepSpeed-Chat (dschat.md 4.2), on purpose:
  * the reward-model score lands on the last real action. DeepSpeed-Chat adds it one index later, on
    the position after the answer, which its mask excludes (its mask is `seq != pad`, which for
    pad == eos tokenizers also hides the EOS): that reward never gets a policy-gradient term of its own;
  * the answer mask comes from the first EOS, not from the pad id, so pad == eos tokenizers keep the
    EOS action and a pad id generated inside an answer does not cut it;
  * advantage whitening is available (off by default, as there).
The constants' defaults are DeepSpeed-Chat's: kl_ctl 0.1, clip_reward_value 5, cliprange 0.2,
cliprange_value 0.2, gamma 1.0, lam 0.95.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def answer_mask(answer: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 for each generated token up to and including the first EOS, 0 after it. [B, A] long."""
    is_eos = (answer == eos_id).long()
    eos_before = is_eos.cumsum(dim=1) - is_eos  # EOS tokens strictly before each position
    return (eos_before == 0).long()


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (what `generate` uses), so scoring sees the same positions."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens) under `logits` ([B, T, V] and [B, T] -> [B, T]), computed in fp32."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked entries; 0 when there are none (a batch whose answers were all dropped)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def last_action(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real action, [B] (0 for a row without actions, which is masked anyway)."""
    n = mask.long().sum(dim=1)
    return (n - 1).clamp(min=0)


def shaped_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, score: torch.Tensor, mask: torch.Tensor,
                   kl_ctl: float, clip_reward_value: float) -> torch.Tensor:
    """Per-action reward: -kl_ctl * (log pi - log pi_ref) on every real action, plus the reward model's
    score, clipped to +-clip_reward_value, on the last real action; 0 on masked positions."""
    mask = mask.to(logprobs.dtype)
    rewards = -kl_ctl * (logprobs - ref_logprobs) * mask
    has_action = mask.sum(dim=1) > 0
    bonus = score.to(rewards.dtype).clamp(-clip_reward_value, clip_reward_value) * has_action
    rows = torch.arange(len(rewards), device=rewards.device)
    rewards[rows, last_action(mask)] += bonus
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation backwards over the answer: (advantages, returns), [B, A].

    Positions after the last real action carry reward 0 and value 0, so the last action bootstraps
    from 0 (the episode ends there) and every masked position gets advantage 0."""
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    width = values.shape[1]
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages.detach(), (advantages + values).detach()


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean and unit variance over the masked entries (masked entries stay 0)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def actor_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
               cliprange: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip policy loss and the fraction of actions where the clip was active. The log-ratio is
    zeroed where `mask` is 0 before it is exponentiated (an overflow there would make 0 * inf = NaN of
    the whole loss) and clamped to +-20 elsewhere, as OpenRLHF does: exp(20) is finite in fp32."""
    log_ratio = torch.where(mask.bool(), logprobs - old_logprobs, torch.zeros_like(logprobs)).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


def critic_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * max((v - R)^2, (v_clip - R)^2) and the fraction where the clip was active."""
    values = values.float()
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, masked_mean((clipped_loss > unclipped_loss).float(), mask).detach()
