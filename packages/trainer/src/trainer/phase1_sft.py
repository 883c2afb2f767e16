"""Phase 1: supervised fine-tuning of a causal LM on dataprep's phase-1 shards.

    python -m trainer.phase1_sft --shards out/hh --model_name_or_path facebook/opt-1.3b --output_dir ckpt/sft
    deepspeed --num_gpus 8 packages/trainer/src/trainer/phase1_sft.py ...   (same flags)

The loop is loop.run; this module says what SFT adds: the causal LM, the labels (-100 on padding, and
on the tokens --sft_loss leaves out), the loss, and eval as token-weighted loss and perplexity.

The loss is the token mean over the optimizer step's target tokens, all micro-batches and ranks
together (loop.py), packed or not: --packing gives every row the same target tokens (packing.py), so
the same rows give the same gradient whichever way they are batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy

from trainer import flags as F, packing, runtime
from trainer.collate import IGNORE_INDEX, SFT_LOSSES, SFTCollator
from trainer.loop import Packed, Recipe, Step, run
from trainer.models import causal_lm


@dataclass(frozen=True, kw_only=True)
class SFTFlags(F.TrainFlags):
    learning_rate: float = F.flag(1e-3, "peak learning rate")
    sft_loss: str = F.flag("full", "the tokens SFT learns: full, every token (DeepSpeed-Chat's); last, the final answer "
                                   "(from prompt_len); all, every assistant turn of the dialogue (the shards' loss_mask)", SFT_LOSSES)


def targets(batch: dict) -> int:
    """How many tokens the batch trains on (labels are shifted by one: a row's first token is never a target)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy summed over the target tokens (fp32; 0, still with a graph, when there are none)."""
    return cross_entropy(logits[..., :-1, :].flatten(0, -2).float(), labels[..., 1:].flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def step(engine, batch: dict) -> Step:
    logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return Step(token_loss_sum(logits, batch["labels"]), tokens=int(batch["attention_mask"].sum()), samples=batch["input_ids"].shape[0])


def packed_step(engine, batch: dict) -> Step:
    inputs = packing.model_inputs(batch, packing.attention_of(engine))
    logits = engine(**inputs, use_cache=False).logits
    return Step(token_loss_sum(logits, batch["labels"].view_as(inputs["input_ids"])), tokens=packing.real_tokens(batch),
                samples=len(batch["row_len"]))


def eval_sums(engine, batch: dict) -> torch.Tensor:
    """The batch's summed token loss and its target tokens (the mean is token-weighted)."""
    logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return torch.stack([token_loss_sum(logits, batch["labels"]).double(), torch.tensor(float(targets(batch)), dtype=torch.float64,
                                                                                      device=logits.device)])


def eval_metrics(totals: dict[str, float]) -> dict:
    loss = totals["loss_sum"] / max(totals["tokens"], 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50))}


def recipe(flags: SFTFlags) -> Recipe:
    return Recipe(
        script="phase1_sft",
        phase=1,
        model=lambda f, tokenizer: causal_lm(f.model_name_or_path, f.model_config, tokenizer, f.dropout,
                                             packing.varlen_kernel(f.packing, f.dtype)),
        collator=lambda pad_id, width: SFTCollator(pad_id, pad_to=width, loss=flags.sft_loss),
        step=step,
        units=targets,
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
