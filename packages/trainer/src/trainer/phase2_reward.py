"""Phase 2: the pairwise reward model on dataprep's phase-2 shards.

    python -m trainer.phase2_reward --shards out/hh --model_name_or_path facebook/opt-350m --output_dir ckpt/rm

A causal-LM backbone plus a scalar head scores the last real token of each sequence. The default
loss is -logsigmoid(r_chosen - r_rejected) on those end scores (what inference and phase 3 use);
--loss divergence gives DeepSpeed-Chat's per-token loss over the span where the pair differs.
Eval: accuracy (chosen scored above rejected) and mean chosen / rejected scores.
"""

from __future__ import annotations

import time

import torch

from trainer import runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.collate import PairCollator
from trainer.models import backbone
from trainer.reward import RewardModel, pairwise_loss
from trainer.shard_dataset import ShardDataset


def parse_args(argv=None):
    p = runtime.common_args("Phase 2 (reward model) on dataprep shards.", phase=2)
    p.add_argument("--loss", default="last", choices=["last", "divergence"], help="end-score loss (default) or DeepSpeed-Chat's")
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(engine, eval_loader, device, max_batches: int) -> dict:
    engine.eval()
    total = torch.zeros(4, device=device, dtype=torch.float64)  # correct, pairs, sum chosen, sum rejected
    for i, batch in enumerate(eval_loader):
        if i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        scored = pairwise_loss(engine(**batch), batch["input_ids"], batch["attention_mask"])
        c, r = scored["chosen"].double(), scored["rejected"].double()
        total += torch.stack([(c > r).sum().double(), torch.tensor(float(len(c)), device=device, dtype=torch.float64), c.sum(), r.sum()])
    torch.distributed.all_reduce(total)
    engine.train()
    pairs = total[1].clamp(min=1)
    return {"eval_accuracy": (total[0] / pairs).item(), "chosen_score": (total[2] / pairs).item(), "rejected_score": (total[3] / pairs).item()}


def main(argv=None) -> None:
    args = parse_args(argv)
    rank, world, device = runtime.init_distributed()
    torch.manual_seed(args.seed)
    tokenizer = runtime.shard_tokenizer(args.shards)
    model = RewardModel(backbone(args.model_name_or_path, args.model_config, tokenizer))
    runtime.check_tokenizer(args.shards, args.model_name_or_path, model.config)
    if args.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable()

    train, evals = ShardDataset(args.shards, 2, "train"), ShardDataset(args.shards, 2, "eval")
    collate = PairCollator(runtime.pad_id(tokenizer), pad_to=train.max_seq_len if args.pad_to_max else None)
    train_loader, eval_loader = runtime.loaders(train, evals, collate, args, rank, world)
    engine, total_steps = runtime.engine(model, args, world, len(train_loader))
    metrics = runtime.Metrics(args.output_dir / "metrics.jsonl", rank == 0)
    metrics.log(step=0, **evaluate(engine, eval_loader, device, args.eval_iters))

    step, epoch = 0, 0
    window = runtime.StepWindow(world, args.gradient_accumulation_steps)
    while step < total_steps:
        train_loader.sampler.set_epoch(epoch)  # a new shuffle every epoch (DeepSpeed-Chat never calls it)
        fetched = time.perf_counter()
        for batch in train_loader:
            waited = time.perf_counter() - fetched
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = pairwise_loss(engine(**batch), batch["input_ids"], batch["attention_mask"], kind=args.loss)["loss"]
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            window.add(loss.item(), int(batch["attention_mask"].sum()), batch["input_ids"].shape[0] // 2, waited)
            if boundary:
                step += 1
                metrics.log(step=step, epoch=epoch, lr=engine.get_lr()[0], **window.summary(device))
                if args.eval_interval and step % args.eval_interval == 0 and step < total_steps:
                    metrics.log(step=step, **evaluate(engine, eval_loader, device, args.eval_iters))
                window.reset()
                if step >= total_steps:
                    break
            fetched = time.perf_counter()
        epoch += 1

    metrics.log(step=step, **evaluate(engine, eval_loader, device, args.eval_iters))
    save_model(engine.module, args.output_dir, rank, args.zero_stage)  # backbone + value_head.pt
    if rank == 0:
        save_tokenizer(tokenizer, args.output_dir)
        metrics.plot(args.output_dir / "loss.png", panels=(("loss",), ("eval_accuracy",)))
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
