"""DPO's maths: the log-probability of each answer, and the losses (DPO, conservative DPO, IPO, SimPO).

Rows come as phase 2 lays them out: [2B, L], the B chosen sequences, then the B rejected ones.
An answer's log-prob is summed over its own tokens: those at or after the row's `prompt_len` (token
space, where dataprep ended the prompt), padding excluded. DeepSpeed-Chat's step2_dpo starts the
answer at the first token where chosen and rejected differ instead, so a common start of the two
answers counts as prompt there; it cancels in the DPO margin only when the policy and the reference
agree on it.

    sigmoid  (DPO; conservative DPO with label_smoothing e, Mitchell 2023)
             h = (log pi_c - log ref_c) - (log pi_r - log ref_r)
             loss = -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
    ipo      (Azar et al. 2023, on summed log-probs as the paper and OpenRLHF; TRL averages per token)
             loss = (h - 1 / (2 beta))^2
    simpo    (Meng et al. 2024: no reference; log-probs averaged over each answer's tokens)
             z = beta (avg log pi_c - avg log pi_r) - gamma
             loss = -(1 - e) log sigmoid(z) - e log sigmoid(-z)

The implicit rewards logged are beta (log pi - log ref) per answer (SimPO: beta avg log pi).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.ppo import gather_logprobs

LOSSES = ("sigmoid", "ipo", "simpo")


@dataclass(frozen=True)
class Objective:
    loss: str  # one of LOSSES
    beta: float
    label_smoothing: float = 0.0  # sigmoid and simpo: the assumed share of flipped preferences
    simpo_gamma: float = 0.5  # simpo: the target reward margin

    @property
    def needs_reference(self) -> bool:
        return self.loss != "simpo"


def answer_logps(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 prompt_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's summed answer log-prob (fp32) and its answer length: ([N], [N]).
    Token t is predicted by the logits at t - 1; it belongs to the answer when t >= prompt_len."""
    logps = gather_logprobs(logits[:, :-1], input_ids[:, 1:])
    position = torch.arange(1, input_ids.shape[1], device=input_ids.device)
    answer = (position >= prompt_len.unsqueeze(1)) & attention_mask[:, 1:].bool()
    return (logps * answer).sum(dim=1), answer.sum(dim=1)


def packed_answer_logps(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """answer_logps for a packed batch (packing.py), per original row ([R], [R]), from logits in either
    input layout. Token t is predicted by the logits at t - 1 of the same row; it belongs to the answer
    when its position within the row is at least the row's prompt_len."""
    ids = batch["input_ids"].reshape(logits.shape[:-1])
    segment, position = batch["segment"].reshape(ids.shape), batch["position_ids"].reshape(ids.shape)
    logps = gather_logprobs(logits[:, :-1], ids[:, 1:])
    row = segment[:, 1:]
    answer = (row >= 0) & (row == segment[:, :-1]) & (position[:, 1:] >= batch["prompt_len"][row.clamp(min=0)])
    rows = len(batch["row_len"])
    total = torch.zeros(rows, dtype=logps.dtype, device=logps.device).index_add_(0, row[answer], logps[answer])
    count = torch.zeros(rows, dtype=torch.long, device=logps.device).index_add_(0, row[answer], torch.ones_like(row[answer]))
    return total, count


@dataclass(frozen=True)
class Scored:
    """Per pair ([B]): the loss and the implicit rewards of the chosen and the rejected answer."""

    loss: torch.Tensor
    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor

    @property
    def correct(self) -> torch.Tensor:
        return self.chosen_reward > self.rejected_reward

    @property
    def margin(self) -> torch.Tensor:
        return self.chosen_reward - self.rejected_reward


def preference_loss(objective: Objective, policy: torch.Tensor, reference: torch.Tensor | None, lengths: torch.Tensor) -> Scored:
    """The loss of each pair from [2B] summed answer log-probs (chosen first), the reference's
    (None for simpo) and the answer lengths."""
    policy = policy.double()
    chosen, rejected = policy.chunk(2)
    beta, smoothing = objective.beta, objective.label_smoothing
    if objective.loss == "simpo":
        length_c, length_r = lengths.clamp(min=1).double().chunk(2)
        reward_c, reward_r = beta * chosen / length_c, beta * rejected / length_r
        z = reward_c - reward_r - objective.simpo_gamma
        return Scored(-(1 - smoothing) * F.logsigmoid(z) - smoothing * F.logsigmoid(-z), reward_c.detach(), reward_r.detach())
    ref_c, ref_r = reference.double().chunk(2)
    h = (chosen - ref_c) - (rejected - ref_r)
    if objective.loss == "ipo":
        loss = (h - 1 / (2 * beta)) ** 2
    else:
        loss = -(1 - smoothing) * F.logsigmoid(beta * h) - smoothing * F.logsigmoid(-beta * h)
    return Scored(loss, (beta * (chosen - ref_c)).detach(), (beta * (rejected - ref_r)).detach())
