"""Phase 2: the pairwise reward model on dataprep's phase-2 shards.

    python -m trainer.phase2_reward --shards out/hh --model_name_or_path facebook/opt-350m --output_dir ckpt/rm

A causal-LM backbone plus a scalar head scores the last real token of each sequence. The default
loss is -logsigmoid(r_chosen - r_rejected) on those end scores (what inference and phase 3 use);
--loss divergence gives DeepSpeed-Chat's per-token loss over the span where the pair differs.
--margin_loss subtracts the graders' score margin inside the log-sigmoid, as Llama 2's reward model
does: -logsigmoid(r_chosen - r_rejected - (chosen_score - rejected_score)); shards without scores are
refused, and a pair without them (in a blend) trains with margin 0.
Eval: accuracy (chosen scored above rejected) and mean chosen / rejected scores. The loop is loop.run.
With --packing a pair's two rows share a pack (packing.py) and each row's end score is read at its own
last token; the divergence loss compares padded positions, so it does not pack.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from dataprep.format import TOKEN_COLUMNS
from trainer import flags as F, packing, runtime
from trainer.collate import PairCollator, pair_count
from trainer.loop import Packed, Recipe, Step, run
from trainer.models import backbone
from trainer.reward import RewardModel, pairwise_loss, ranking_loss
from trainer.shard_dataset import ShardDataset


@dataclass(frozen=True, kw_only=True)
class RewardFlags(F.TrainFlags):
    learning_rate: float = F.flag(5e-5, "peak learning rate")
    loss: str = F.flag("last", "end-score loss (default) or DeepSpeed-Chat's divergence-span loss", ("last", "divergence"))
    margin_loss: bool = F.flag(False, "subtract the score margin (chosen_score - rejected_score) inside the log-sigmoid, as Llama 2's "
                                      "reward model does; needs shards with scores and --loss last")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin_loss and self.loss != "last":
            raise ValueError("--margin_loss subtracts the margin from the end scores: use it with --loss last")
        if self.packing and self.loss == "divergence":
            raise ValueError("--loss divergence compares the pair's padded positions, which packed rows do not have: "
                             "use --loss last with --packing")


def eval_sums(engine, batch: dict) -> torch.Tensor:
    """Pairs ranked right, pairs, and the summed chosen and rejected end scores."""
    scored = pairwise_loss(engine(batch["input_ids"], batch["attention_mask"]), batch["input_ids"], batch["attention_mask"])
    c, r = scored["chosen"].double(), scored["rejected"].double()
    return torch.stack([(c > r).sum().double(), torch.tensor(float(len(c)), device=c.device, dtype=torch.float64), c.sum(), r.sum()])


def eval_metrics(totals: dict[str, float]) -> dict:
    count = max(totals["pairs"], 1)
    return {"eval_accuracy": totals["correct"] / count, "chosen_score": totals["chosen_sum"] / count, "rejected_score": totals["rejected_sum"] / count}


def packed_step(engine, batch: dict, margin_loss: bool = False) -> Step:
    """The end-score loss on a packed batch: each row's score at its own last token."""
    values = engine(**packing.model_inputs(batch, packing.attention_of(engine)))
    loss = ranking_loss(values.reshape(-1)[packing.last_tokens(batch)], batch["margin"] if margin_loss else None)["loss"]
    return Step(loss * pair_count(batch), tokens=packing.real_tokens(batch), samples=pair_count(batch))


def require_scores(train: ShardDataset, evals: ShardDataset, rank: int, world: int, device) -> tuple:
    """--margin_loss needs the graders' scores: shards with none are refused before a model is built."""
    scores = train.scalar("chosen_score"), train.scalar("rejected_score")
    if any(s is None or np.isnan(s).all() for s in scores):
        print(f"trainer: --margin_loss: the phase-2 train shards of {train.paths[0].parents[1]} have no chosen_score / "
              "rejected_score (the data has no scores: HH, say); prepare scored data (docs/datasets.md) or drop --margin_loss",
              file=sys.stderr, flush=True)
        raise SystemExit(2)  # a usage error, like the command line's
    return train, evals


def recipe(flags: RewardFlags) -> Recipe:
    def step(engine, batch: dict) -> Step:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        margin = batch["margin"] if flags.margin_loss else None
        loss = pairwise_loss(engine(ids, mask), ids, mask, kind=flags.loss, margin=margin)["loss"]  # the mean over the pairs
        return Step(loss * pair_count(batch), tokens=int(batch["attention_mask"].sum()), samples=pair_count(batch))

    return Recipe(
        script="phase2_reward",
        phase=2,
        model=lambda f, tokenizer: RewardModel(backbone(f.model_name_or_path, f.model_config, tokenizer, f.dropout,
                                                        packing.varlen_kernel(f.packing, f.dtype))),
        collator=lambda pad_id, width: PairCollator(pad_id, pad_to=width),
        step=step,
        units=pair_count,
        eval_names=("correct", "pairs", "chosen_sum", "rejected_sum"),
        eval_sums=eval_sums,
        eval_metrics=eval_metrics,
        panels=(("loss",), ("eval_accuracy",)),
        packed=Packed(collator=lambda pad_id, width: packing.PackedCollator(pad_id, TOKEN_COLUMNS[2], pad_to=width), step=lambda engine, batch: packed_step(engine, batch, flags.margin_loss)),
        setup=require_scores if flags.margin_loss else None,
    )


@runtime.one_line_errors
def main(argv: list[str] | None = None) -> None:
    flags = F.parse(RewardFlags, "Phase 2 (reward model) on dataprep shards.", argv)
    run(flags, recipe(flags))


if __name__ == "__main__":
    main()
