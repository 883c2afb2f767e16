"""The training loop of phases 1 and 2 and of DPO: one model on one phase's shards.

A phase brings a `Recipe`, what differs: its model, its collator, its step from batch to loss, its
eval, and for --packing its collator of packs and step on them (packing.py). `run` does the rest, top
to bottom:

    flags -> distributed start-up -> shards (-> the recipe's setup: DPO's reference log-probs)
          -> model (checked against the shards' tokenizer; LoRA with --lora_dim)
          -> loaders -> DeepSpeed engine -> resume (resume.py) or eval
          -> loop (eval every --eval_interval, a resumable checkpoint every --save_steps) -> eval -> save
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from dataprep.format import TokenizerInfo
from trainer import lora, packing, resume, runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.flags import TrainFlags
from trainer.models import partitioned
from trainer.shard_dataset import ShardDataset


@dataclass(frozen=True)
class Step:
    """What one micro-batch gave: its loss (to backpropagate) and what it counted for throughput."""

    loss: torch.Tensor
    tokens: int  # real (non-pad) tokens
    samples: int
    logged: dict[str, float] = field(default_factory=dict)  # more per-step values, averaged like the loss


@dataclass(frozen=True)
class Packed:
    """What a phase adds for --packing (packing.py): its collator of packs, and its step on a packed batch."""

    collator: Callable[[int, int | None], Callable[[list[packing.Pack]], dict]]  # (pad id, fixed width or None) -> collate
    step: Callable[[torch.nn.Module, dict], Step]


@dataclass(frozen=True)
class Recipe:
    """What a phase adds to the loop."""

    phase: int  # the shards it reads
    model: Callable[[TrainFlags, TokenizerInfo], torch.nn.Module]
    collator: Callable[[int, int | None], Callable[[list[dict]], dict]]  # (pad id, fixed width or None) -> collate
    step: Callable[[torch.nn.Module, dict], Step]  # (engine, batch on the device) -> Step
    eval_names: tuple[str, ...]  # what eval adds up over batches and ranks ...
    eval_sums: Callable[[torch.nn.Module, dict], torch.Tensor]  # ... (engine, batch) -> those sums for one batch (float64)
    eval_metrics: Callable[[dict[str, float]], dict]  # the totals by name -> the logged eval values
    panels: tuple[tuple[str, ...], ...]  # metrics plotted together, one chart each
    # (train, eval, rank, world, device) -> the datasets to train and evaluate on, before the model is built
    setup: Callable[[ShardDataset, ShardDataset, int, int, torch.device], tuple] | None = None
    packed: Packed | None = None  # None: the phase does not pack


def run(flags: TrainFlags, recipe: Recipe) -> None:
    if flags.packing and recipe.packed is None:
        raise SystemExit(f"trainer: phase {recipe.phase} does not support --packing")
    rank, world, device = runtime.init_distributed()
    shards = ShardDataset(flags.shards, recipe.phase, "train"), ShardDataset(flags.shards, recipe.phase, "eval")
    train, evals = recipe.setup(*shards, rank, world, device) if recipe.setup else shards
    tokenizer = shards[0].tokenizer
    spec = runtime.EngineSpec(flags.per_device_train_batch_size, flags.gradient_accumulation_steps, flags.zero_stage, flags.dtype, flags.offload)
    torch.manual_seed(flags.seed)
    with partitioned(runtime.ds_config(spec, world)):  # ZeRO-3: no rank ever holds the whole model
        model = recipe.model(flags, tokenizer)
    runtime.check_tokenizer(flags.shards, tokenizer, flags.model_name_or_path, model.config)
    model = lora.add(model, flags.lora)
    if rank == 0:
        print(f"trainer: {lora.trainable_summary(model)}", flush=True)
    if flags.gradient_checkpointing:
        model.gradient_checkpointing_enable()

    pad, width = tokenizer.pad_or_eos, shards[0].max_seq_len if flags.pad_to_max else None
    collate = recipe.collator(pad, width)
    if flags.packing:  # eval stays unpacked: its metrics do not depend on the flag
        train_loader = packing.loader(train, recipe.packed.collator(pad, width), flags.per_device_train_batch_size, rank, world, flags.seed)
    else:
        train_loader = runtime.loader(train, collate, flags.per_device_train_batch_size, rank, world, flags.seed, shuffle=True)
    step_of = recipe.packed.step if flags.packing else recipe.step
    eval_loader = runtime.loader(evals, collate, flags.per_device_eval_batch_size, rank, world, flags.seed, shuffle=False)
    total_steps = flags.max_steps or max(1, len(train_loader) // flags.gradient_accumulation_steps) * flags.num_train_epochs
    optim = runtime.OptimSpec(flags.learning_rate, flags.weight_decay, flags.lr_scheduler_type, flags.num_warmup_steps, total_steps,
                              flags.lora_learning_rate)
    engine = runtime.trained_engine(model, spec, optim, world)
    identity = {"phase": recipe.phase, "model": runtime.model_identity(flags.model_name_or_path, flags.model_config),
                "tokenizer": tokenizer.fingerprint, "shards": shards[0].cache_key, "world": world, "lora": asdict(flags.lora),
                "packing": flags.packing}
    record = resume.restore(flags.output_dir, flags.resume_from, {"model": engine}, identity, rank)
    metrics = runtime.Metrics(flags.output_dir / "metrics.jsonl", rank == 0, keep=record["metrics_lines"] if record else 0)

    def evaluate() -> dict:
        engine.eval()
        totals = torch.zeros(len(recipe.eval_names), dtype=torch.float64, device=device)
        with torch.no_grad():
            for i, batch in enumerate(eval_loader):
                if i >= flags.eval_iters:
                    break
                totals += recipe.eval_sums(engine, {k: v.to(device) for k, v in batch.items()})
        torch.distributed.all_reduce(totals)
        engine.train()
        return recipe.eval_metrics(dict(zip(recipe.eval_names, totals.tolist())))

    if record is None:
        metrics.log(step=0, **evaluate())
    position = record["position"] if record else {"step": 0, "epoch": 0, "batches": 0}
    step, epoch, batches = position["step"], position["epoch"], position["batches"]
    train_loader.sampler.skip = batches * flags.per_device_train_batch_size  # the resumed epoch's consumed rows (or packs)
    window = runtime.StepWindow(world, flags.gradient_accumulation_steps)
    while step < total_steps:
        train_loader.sampler.set_epoch(epoch)  # a new shuffle every epoch (DeepSpeed-Chat never calls it)
        fetched = time.perf_counter()
        for batch in train_loader:
            waited = time.perf_counter() - fetched
            out = step_of(engine, {k: v.to(device) for k, v in batch.items()})
            engine.backward(out.loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            batches += 1
            window.add(out.loss.item(), out.tokens, out.samples, waited, out.logged)
            if boundary:
                step += 1
                metrics.log(step=step, epoch=epoch, lr=engine.get_lr()[0], **window.summary(device))
                if flags.eval_interval and step % flags.eval_interval == 0 and step < total_steps:
                    metrics.log(step=step, **evaluate())
                window.reset()
                if flags.save_steps and step % flags.save_steps == 0 and step < total_steps:
                    resume.save(flags.output_dir, step, {"model": engine}, {"step": step, "epoch": epoch, "batches": batches},
                                identity, metrics.lines, rank)
                resume.kill_point(step)
                if step >= total_steps:
                    break
            fetched = time.perf_counter()
        epoch, batches = epoch + 1, 0
        train_loader.sampler.skip = 0

    metrics.log(step=step, **evaluate())
    save_model(engine, flags.output_dir, rank, flags.zero_stage)
    if rank == 0:
        save_tokenizer(tokenizer, flags.output_dir)
        metrics.plot(flags.output_dir / "loss.png", panels=recipe.panels)
    torch.distributed.barrier()
