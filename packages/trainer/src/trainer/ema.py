"""Exponential moving average of the actor's weights (`--enable_ema`), as DeepSpeed-Chat keeps it:
after every actor update, ema <- beta * ema + (1 - beta) * param, beta = 0.992.

The copy is a plain module beside the engine. Under ZeRO-3 each actor parameter is gathered in turn
(never the whole model at once) to read its full value."""

from __future__ import annotations

import copy
import contextlib

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, beta: float = 0.992, zero_stage: int = 0):
        self.beta, self.zero_stage = beta, zero_stage
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema, param in zip(self.model.parameters(), model.parameters()):
            with self._gathered(param):
                ema.lerp_(param.detach().to(ema.dtype), 1.0 - self.beta)

    def _gathered(self, param: torch.nn.Parameter):
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters([param], modifier_rank=None)
