"""The training loop of phases 1 and 2 and of DPO: one model on one phase's shards.

A phase brings a `Recipe`, what differs: its model, its collator, its step from batch to loss, its
eval, and for --packing its collator of packs and step on them (packing.py). `run` does the rest, top
to bottom:

    flags -> distributed start-up -> shards -> the model's tokenizer checked (from its config and
          tokenizer files, before any weights load) -> the run's identity (a finished run's directory
          is not trained again) -> the recipe's setup (DPO's reference log-probs)
          -> model (LoRA with --lora_dim) -> loaders -> DeepSpeed engine -> resume (resume.py) or eval
          -> loop (eval every --eval_interval, a resumable checkpoint every --save_steps) -> eval -> save

The loss of an optimizer step is a mean over its units (phase 1: target tokens; pairs in phase 2 and
DPO) counted over all its micro-batches and all ranks, whatever their number or packing: each
micro-batch's step returns its summed loss, which is scaled by gas * world / units before backward
(DeepSpeed divides by gas and averages over ranks). A unit's weight is then 1 / units wherever it
lands, as transformers' `num_items_in_batch` does; a per-micro-batch mean would weigh the tokens of a
short micro-batch, and the pairs of a pack of few long pairs, more.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from dataprep.format import TokenizerInfo, file_sha256
from trainer import lora, packing, resume, runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.flags import TrainFlags
from trainer.models import load_config, partitioned
from trainer.shard_dataset import ShardDataset


@dataclass(frozen=True)
class Step:
    """What one micro-batch gave: its loss summed over its units (to backpropagate, once scaled), and
    what it counted for throughput."""

    loss: torch.Tensor  # the sum over the micro-batch's units
    tokens: int  # real (non-pad) tokens
    samples: int
    logged: dict[str, float] = field(default_factory=dict)  # more per-step values, averaged over micro-batches


@dataclass(frozen=True)
class Packed:
    """What a phase adds for --packing (packing.py): its collator of packs, and its step on a packed batch."""

    collator: Callable[[int, int | None], Callable[[list[packing.Pack]], dict]]  # (pad id, fixed width or None) -> collate
    step: Callable[[torch.nn.Module, dict], Step]


@dataclass(frozen=True)
class Recipe:
    """What a phase adds to the loop."""

    script: str  # the trainer module's name: part of a run's identity
    phase: int  # the shards it reads
    model: Callable[[TrainFlags, TokenizerInfo], torch.nn.Module]
    collator: Callable[[int, int | None], Callable[[list[dict]], dict]]  # (pad id, fixed width or None) -> collate
    step: Callable[[torch.nn.Module, dict], Step]  # (engine, batch on the device) -> Step
    units: Callable[[dict], int]  # a collated batch (padded or packed) -> the units its loss sums over
    eval_names: tuple[str, ...]  # what eval adds up over batches and ranks ...
    eval_sums: Callable[[torch.nn.Module, dict], torch.Tensor]  # ... (engine, batch) -> those sums for one batch (float64)
    eval_metrics: Callable[[dict[str, float]], dict]  # the totals by name -> the logged eval values
    panels: tuple[tuple[str, ...], ...]  # metrics plotted together, one chart each
    # (train, eval, rank, world, device) -> the datasets to train and evaluate on, before the model is built
    setup: Callable[[ShardDataset, ShardDataset, int, int, torch.device], tuple] | None = None
    packed: Packed | None = None  # None: the phase does not pack
    identity: Callable[[TokenizerInfo, torch.device], dict] | None = None  # what else identifies a run (DPO: its reference)


def run(flags: TrainFlags, recipe: Recipe) -> None:
    if flags.packing and recipe.packed is None:
        raise SystemExit(f"trainer: phase {recipe.phase} does not support --packing")
    rank, world, device = runtime.init_distributed()
    shards = ShardDataset(flags.shards, recipe.phase, "train"), ShardDataset(flags.shards, recipe.phase, "eval")
    tokenizer = shards[0].tokenizer
    if flags.model_name_or_path is not None:  # a model built from --model_config is sized to the shards' tokenizer
        runtime.check_tokenizer(flags.shards, tokenizer, flags.model_name_or_path, load_config(flags.model_name_or_path))
    identity = resume.identity(recipe.script, flags, tokenizer=tokenizer.fingerprint, shards=shards[0].cache_key, world=world,
                               model_config=file_sha256(flags.model_config) if flags.model_config else None,
                               **(recipe.identity(tokenizer, device) if recipe.identity else {}))
    if resume.check(flags.output_dir, flags.resume_from, identity, rank):
        return
    train, evals = recipe.setup(*shards, rank, world, device) if recipe.setup else shards
    spec = runtime.EngineSpec(flags.per_device_train_batch_size, flags.gradient_accumulation_steps, flags.zero_stage, flags.dtype, flags.offload)
    torch.manual_seed(flags.seed)
    with partitioned(runtime.ds_config(spec, world)):  # ZeRO-3: no rank ever holds the whole model
        model = recipe.model(flags, tokenizer)
    if flags.packing:
        packing.attention_of(model)  # a family that cannot take packed rows is refused before any compute
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
    gas = flags.gradient_accumulation_steps
    total_steps = flags.max_steps or planned_steps(train_loader, flags.num_train_epochs, gas)
    optim = runtime.OptimSpec(flags.learning_rate, flags.weight_decay, flags.lr_scheduler_type, flags.num_warmup_steps, total_steps,
                              flags.lora_learning_rate)
    engine = runtime.trained_engine(model, spec, optim, world)
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
    micro_batches = stream(train_loader, epoch, batches)
    window = runtime.StepWindow(world, gas)
    while step < total_steps:
        fetched = time.perf_counter()
        group = [next(micro_batches) for _ in range(gas)]  # the step's micro-batches: their units are counted first
        window.wait += time.perf_counter() - fetched
        units = torch.tensor([float(sum(recipe.units(batch) for _, _, batch in group))], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(units)
        scale = gas * world / max(units.item(), 1.0)
        for i, (_, _, batch) in enumerate(group):
            out = step_of(engine, {k: v.to(device) for k, v in batch.items()})
            engine.backward(out.loss * scale)
            if i == gas - 1:
                dump_gradients(engine, step + 1, flags.output_dir, rank)
            engine.step()
            window.add(out.loss.item(), out.tokens, out.samples, out.logged)
        step, (epoch, batches, _) = step + 1, group[-1]
        metrics.log(step=step, epoch=epoch, lr=engine.get_lr()[0], **window.summary(device, units.item()))
        if flags.eval_interval and step % flags.eval_interval == 0 and step < total_steps:
            metrics.log(step=step, **evaluate())
        window.reset()
        if flags.save_steps and step % flags.save_steps == 0 and step < total_steps:
            resume.save(flags.output_dir, step, {"model": engine}, {"step": step, "epoch": epoch, "batches": batches},
                        identity, metrics.lines, rank)
        resume.kill_point(step)

    metrics.log(step=step, **evaluate())
    save_model(engine, flags.output_dir, rank, flags.zero_stage)
    if rank == 0:
        save_tokenizer(tokenizer, flags.output_dir)
        metrics.plot(flags.output_dir / "loss.png", panels=recipe.panels)
    resume.finish(flags.output_dir, identity, step, rank)


def planned_steps(loader, epochs: int, accumulation: int) -> int:
    """Optimizer steps in `epochs` passes of `loader`, each epoch counted on its own: a packed epoch's
    plan can hold a pack more or fewer than epoch 0's."""
    micro_batches = 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        micro_batches += len(loader)
    return max(1, micro_batches // accumulation)


def stream(loader, epoch: int, batches: int) -> Iterator[tuple[int, int, dict]]:
    """(epoch, micro-batches taken in it, micro-batch), endlessly from `batches` into `epoch`, with a new
    shuffle (or pack plan) every epoch (DeepSpeed-Chat never reshuffles). An optimizer step may span
    two epochs, as DeepSpeed's accumulation counter does."""
    while True:
        loader.sampler.set_epoch(epoch)
        loader.sampler.skip = batches * loader.batch_size  # the resumed epoch's consumed rows (or packs)
        for batch in loader:
            batches += 1
            yield epoch, batches, batch
        epoch, batches = epoch + 1, 0


def dump_gradients(engine, step: int, output_dir, rank: int) -> None:
    """For the gradient-equality tests: TRAINER_GRADS_AT_STEP=N makes rank 0 save the full gradient of
    step N (reduced over the accumulation and the ranks, before clipping) to OUTPUT_DIR/grads-N.pt."""
    if os.environ.get("TRAINER_GRADS_AT_STEP") != str(step):
        return
    from deepspeed.utils import safe_get_full_grad

    grads = {name: safe_get_full_grad(param) for name, param in engine.module.named_parameters() if param.requires_grad}
    if rank == 0:
        torch.save({name: g.detach().float().cpu().clone() for name, g in grads.items()}, output_dir / f"grads-{step}.pt")
