"""Phase 1: supervised fine-tuning of a causal LM on dataprep's phase-1 shards.

    python -m trainer.phase1_sft --shards out/hh --model_name_or_path facebook/opt-1.3b --output_dir ckpt/sft
    deepspeed --num_gpus 8 packages/trainer/src/trainer/phase1_sft.py ...   (same flags)

The loop is loop.run; this module says what SFT adds: the causal LM, the labels (-100 on padding, and
on the tokens --sft_loss leaves out), the loss, and eval as token-weighted loss and perplexity.

The loss is the token mean over the micro-batch's target tokens (transformers' causal-LM loss, as
DeepSpeed-Chat), packed or not: --packing gives every row the same target tokens (packing.py), so a
batch of the same rows has the same loss; a packed micro-batch just holds more rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainer import flags as F, packing, runtime
from trainer.collate import IGNORE_INDEX, SFT_LOSSES, SFTCollator
from trainer.loop import Packed, Recipe, Step, run
from trainer.models import causal_lm


@dataclass(frozen=True, kw_only=True)
class SFTFlags(F.TrainFlags):
    learning_rate: float = F.flag(1e-3, "peak learning rate")
    sft_loss: str = F.flag("full", "the tokens SFT learns: full, every token (DeepSpeed-Chat's); last, the final answer "
                                   "(from prompt_len); all, every assistant turn of the dialogue (the shards' loss_mask)", SFT_LOSSES)


def targets(batch: dict) -> torch.Tensor:
    """How many tokens the batch trains on (labels are shifted by one inside the model)."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum()


def step(engine, batch: dict) -> Step:
    out = engine(**batch, use_cache=False)
    return Step(_loss(out, batch), tokens=int(batch["attention_mask"].sum()), samples=batch["input_ids"].shape[0])


def packed_step(engine, batch: dict) -> Step:
    inputs = packing.model_inputs(batch, packing.attention_of(engine))
    out = engine(**inputs, labels=batch["labels"].view_as(inputs["input_ids"]), use_cache=False)
    return Step(_loss(out, batch), tokens=packing.real_tokens(batch), samples=len(batch["row_len"]))


def _loss(out, batch: dict) -> torch.Tensor:
    # A micro-batch with no target token (--sft_loss last, every answer truncated away) has a mean loss
    # over nothing, NaN: it counts as a zero loss instead, which still runs backward and step, so every
    # rank stays in step with the others.
    return out.loss if int(targets(batch)) else out.logits.sum() * 0.0


def eval_sums(engine, batch: dict) -> torch.Tensor:
    """The batch's loss times the tokens it predicts, and that count (the mean is token-weighted)."""
    out = engine(**batch, use_cache=False)
    tokens = targets(batch).double()
    return torch.stack([torch.where(tokens > 0, out.loss.double() * tokens, torch.zeros_like(tokens)), tokens])


def eval_metrics(totals: dict[str, float]) -> dict:
    loss = totals["loss_sum"] / max(totals["tokens"], 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50))}


def recipe(flags: SFTFlags) -> Recipe:
    return Recipe(
        phase=1,
        model=lambda f, tokenizer: causal_lm(f.model_name_or_path, f.model_config, tokenizer, f.dropout,
                                             packing.varlen_kernel(f.packing, f.dtype)),
        collator=lambda pad_id, width: SFTCollator(pad_id, pad_to=width, loss=flags.sft_loss),
        step=step,
        eval_names=("loss_sum", "tokens"),
        eval_sums=eval_sums,
        eval_metrics=eval_metrics,
        panels=(("loss", "eval_loss"),),
        packed=Packed(collator=lambda pad_id, width: packing.PackedSFTCollator(pad_id, pad_to=width, loss=flags.sft_loss),
                      step=packed_step),
    )


@runtime.one_line_errors
def main(argv: list[str] | None = None) -> None:
    flags = F.parse(SFTFlags, "Phase 1 (SFT) on dataprep shards.", argv)
    run(flags, recipe(flags))


if __name__ == "__main__":
    main()
