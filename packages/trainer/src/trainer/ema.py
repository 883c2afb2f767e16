"""Exponential moving average of the actor's weights (`--enable_ema`), as DeepSpeed-Chat keeps it:
after every actor update, ema <- beta * ema + (1 - beta) * param, beta = 0.992, in fp32. An update is
an optimizer step, once per --gradient_accumulation_steps micro-batches (phase 3's train_on asks the
engine), so the decay per update, and the EMA's horizon, do not depend on the accumulation.

At ZeRO stages 0-2 the copy is a whole module beside the engine, like the actor's own weights. Under
ZeRO-3 it is partitioned like the actor (the caller builds it under models.partitioned): each rank
keeps the fp32 slice of every parameter that it holds of the actor, and updates it from that slice
alone, with no communication. Saving gathers it one parameter at a time (checkpoint.save_model).
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, beta: float = 0.992, partitioned: bool = False):
        self.beta, self.partitioned = beta, partitioned
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, actor: torch.nn.Module) -> None:
        """Once per optimizer step of the actor, after it."""
        for ema, param in zip(self.slices(), _slices(actor, self.partitioned)):
            ema.lerp_(param.to(ema.dtype), 1.0 - self.beta)

    def slices(self) -> list[torch.Tensor]:
        """What this rank holds of the copy: every parameter, or under ZeRO-3 its slice of each."""
        return _slices(self.model, self.partitioned)

    def state(self) -> list[torch.Tensor]:
        """This rank's part, for a resumable checkpoint."""
        return [t.detach().cpu().clone() for t in self.slices()]

    @torch.no_grad()
    def load(self, state: list[torch.Tensor]) -> None:
        for ema, saved in zip(self.slices(), state, strict=True):
            ema.copy_(saved)


def _slices(model: torch.nn.Module, partitioned: bool) -> list[torch.Tensor]:
    return [p.ds_tensor if partitioned else p.data for p in model.parameters()]
