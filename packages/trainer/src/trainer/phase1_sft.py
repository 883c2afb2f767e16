"""Phase 1: supervised fine-tuning of a causal LM on dataprep's phase-1 shards.

    python -m trainer.phase1_sft --shards out/hh --model_name_or_path facebook/opt-1.3b --output_dir ckpt/sft
    deepspeed --num_gpus 8 packages/trainer/src/trainer/phase1_sft.py ...   (same flags)

args -> DeepSpeed config -> model -> shard loaders -> explicit loop (eval every --eval_interval) -> save.
"""

from __future__ import annotations

import math
import time

import torch

from trainer import runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.collate import SFTCollator
from trainer.models import causal_lm
from trainer.shard_dataset import ShardDataset


def parse_args(argv=None):
    p = runtime.common_args("Phase 1 (SFT) on dataprep shards.", phase=1)
    p.add_argument("--mask_prompt", action="store_true", help="no loss on prompt tokens (DeepSpeed-Chat trains on them)")
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(engine, eval_loader, device, max_batches: int) -> dict:
    """Token-weighted mean loss over the eval shards (all ranks), and its perplexity."""
    engine.eval()
    total = torch.zeros(2, device=device, dtype=torch.float64)
    for i, batch in enumerate(eval_loader):
        if i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        out = engine(**batch, use_cache=False)
        tokens = (batch["labels"][:, 1:] != -100).sum()
        total += torch.stack([out.loss.double() * tokens, tokens.double()])
    torch.distributed.all_reduce(total)
    engine.train()
    loss = (total[0] / total[1].clamp(min=1)).item()
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50))}


def main(argv=None) -> None:
    args = parse_args(argv)
    rank, world, device = runtime.init_distributed()
    torch.manual_seed(args.seed)
    tokenizer = runtime.shard_tokenizer(args.shards)
    model = causal_lm(args.model_name_or_path, args.model_config, tokenizer)
    runtime.check_tokenizer(args.shards, args.model_name_or_path, model.config)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()

    train, evals = ShardDataset(args.shards, 1, "train"), ShardDataset(args.shards, 1, "eval")
    collate = SFTCollator(runtime.pad_id(tokenizer), pad_to=train.max_seq_len if args.pad_to_max else None, mask_prompt=args.mask_prompt)
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
            loss = engine(**batch, use_cache=False).loss
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            window.add(loss.item(), int(batch["attention_mask"].sum()), batch["input_ids"].shape[0], waited)
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
    save_model(engine.module, args.output_dir, rank, args.zero_stage)
    if rank == 0:
        save_tokenizer(tokenizer, args.output_dir)
        metrics.plot(args.output_dir / "loss.png", panels=(("loss", "eval_loss"),))
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
