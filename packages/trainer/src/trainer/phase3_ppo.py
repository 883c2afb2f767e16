"""Phase 3: PPO on dataprep's phase-3 prompt shards, from the phase-1 actor and the phase-2 reward model.

    python -m trainer.phase3_ppo --shards out/hh --actor_model_name_or_path ckpt/phase1 \\
        --critic_model_name_or_path ckpt/phase2 --output_dir ckpt/phase3

Four models, each its own DeepSpeed engine: the actor (trained) and the reference (frozen) load the
phase-1 checkpoint; the critic (trained) and the reward model (frozen) load the phase-2 checkpoint.
One round, for every --generation_batches prompt batches:
  1. experience, every model in eval mode: sample answers, then the actor's and the reference's
     log-probs, the critic's values and the reward model's score of each whole sequence;
  2. KL-shaped rewards and GAE advantages (ppo.py);
  3. --ppo_epochs passes over the experience in micro-batches: PPO-clip on the actor (plus the PTX
     LM loss on unsupervised blocks, with --unsup_shards), clipped value loss on the critic, and the
     actor's EMA (--enable_ema).
Flag names and defaults are DeepSpeed-Chat's; ppo.py lists where the maths differs from it and why.
Differences in the loop: experience comes from eval mode (DeepSpeed-Chat scores in train mode, so
dropout makes the first PPO ratio differ from 1); answers of at most one token are masked out of
the losses and counted, so every rank runs the same steps (DeepSpeed-Chat reuses the previous
batch); unsupervised blocks are cycled when they run out, so the prompts set the epoch length.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from trainer import ppo, runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.collate import BlockCollator, PromptCollator
from trainer.ema import EMA
from trainer.models import causal_lm, dropout_overrides
from trainer.reward import RewardModel, end_scores
from trainer.shard_dataset import ShardDataset


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Phase 3 (PPO) on dataprep shards.")
    p.add_argument("--shards", type=Path, required=True, help="a `dataprep prepare` output directory with phase-3 prompts")
    p.add_argument("--actor_model_name_or_path", required=True, help="the phase-1 (SFT) checkpoint: actor and reference")
    p.add_argument("--critic_model_name_or_path", required=True, help="the phase-2 checkpoint: critic and reward model")
    p.add_argument("--unsup_shards", type=Path, help="a prepare output with --unsup blocks: enables the PTX loss")
    p.add_argument("--unsup_coef", type=float, default=27.8, help="weight of the PTX loss (InstructGPT's gamma)")
    p.add_argument("--per_device_generation_batch_size", type=int, default=16)
    p.add_argument("--per_device_training_batch_size", type=int, default=16)
    p.add_argument("--generation_batches", type=int, default=1, help="prompt batches of experience per PPO round")
    p.add_argument("--ppo_epochs", type=int, default=1)
    p.add_argument("--max_prompt_seq_len", type=int, help="prompt width (default: the shards' --max-prompt-len)")
    p.add_argument("--max_answer_seq_len", type=int, default=256)
    p.add_argument("--pad_to_max", action="store_true", help="left-pad every prompt batch to max_prompt_seq_len, as DeepSpeed-Chat does")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1.0: the policy itself)")
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--actor_learning_rate", type=float, default=9.65e-6)
    p.add_argument("--critic_learning_rate", type=float, default=5e-6)
    p.add_argument("--actor_weight_decay", type=float, default=0.0)
    p.add_argument("--critic_weight_decay", type=float, default=0.0)
    p.add_argument("--num_train_epochs", type=int, default=1)
    p.add_argument("--max_steps", type=int, default=0, help="stop after this many prompt batches (0: run the epochs)")
    p.add_argument("--lr_scheduler_type", default="cosine", choices=["cosine", "linear", "constant"])
    p.add_argument("--num_warmup_steps", type=int, default=100)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--actor_zero_stage", type=int, default=0, choices=[0, 1, 2, 3])
    p.add_argument("--critic_zero_stage", type=int, default=0, choices=[0, 1, 2, 3])
    p.add_argument("--offload", action="store_true", help="ZeRO CPU offload of the actor's and critic's optimizer state")
    p.add_argument("--offload_reference_model", action="store_true", help="ZeRO-3 with parameters on the CPU for the reference")
    p.add_argument("--offload_reward_model", action="store_true", help="ZeRO-3 with parameters on the CPU for the reward model")
    p.add_argument("--actor_gradient_checkpointing", action="store_true")
    p.add_argument("--critic_gradient_checkpointing", action="store_true")
    p.add_argument("--actor_dropout", type=float, help="set every dropout of the actor (DeepSpeed-Chat's scripts use 0.0)")
    p.add_argument("--critic_dropout", type=float, help="set every dropout of the critic")
    p.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--enable_ema", action="store_true", help="keep an EMA of the actor (beta --ema_beta), saved to OUTPUT_DIR/actor_ema")
    p.add_argument("--ema_beta", type=float, default=0.992)
    p.add_argument("--kl_ctl", type=float, default=0.1, help="KL penalty coefficient")
    p.add_argument("--clip_reward_value", type=float, default=5.0, help="the reward model's score is clipped to +-this")
    p.add_argument("--cliprange", type=float, default=0.2, help="PPO ratio clip of the actor")
    p.add_argument("--cliprange_value", type=float, default=0.2, help="value clip of the critic")
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--lam", type=float, default=0.95)
    p.add_argument("--whiten_advantages", action="store_true", help="normalise advantages over each generation batch")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--local_rank", type=int, default=-1, help="set by the deepspeed launcher")
    return p.parse_args(argv)


@dataclass
class Experience:
    """One prompt batch's rollouts and scores. Action-aligned tensors are [B, A] (see ppo.py)."""

    seq: torch.Tensor  # [B, Lp + A]
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    start: int  # Lp - 1: the logits index that scores the first answer token
    mask: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    score: torch.Tensor  # [B]
    advantages: torch.Tensor
    returns: torch.Tensor

    def rows(self, part: slice) -> "Experience":
        return Experience(**{f.name: (v[part] if isinstance(v := getattr(self, f.name), torch.Tensor) else v) for f in fields(self)})


def action_logprobs(model, seq: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, start: int) -> torch.Tensor:
    logits = model(input_ids=seq, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).logits
    return ppo.gather_logprobs(logits[:, start:-1], seq[:, start + 1 :])


def action_values(critic, seq: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, start: int) -> torch.Tensor:
    return critic(seq, attention_mask, position_ids)[:, start:-1].float()


@torch.no_grad()
def make_experience(batch: dict, actor, ref, critic, reward, args, tokenizer: dict) -> tuple[Experience, int]:
    """Rollouts for one prompt batch, scored with every model in eval mode; also returns how many
    answers were too short (at most one token) and are masked out."""
    actor.eval(), critic.eval()
    prompt, prompt_mask = batch["prompt"], batch["prompt_att_mask"]
    seq = actor.module.generate(
        prompt, attention_mask=prompt_mask, max_new_tokens=args.max_answer_seq_len, do_sample=True,
        temperature=args.temperature, top_p=args.top_p, top_k=0, eos_token_id=tokenizer["eos_id"],
        pad_token_id=runtime.pad_id(tokenizer), synced_gpus=args.actor_zero_stage == 3,
    )
    width = prompt.shape[1]
    mask = ppo.answer_mask(seq[:, width:], tokenizer["eos_id"])
    short = mask.sum(dim=1) <= 1
    mask[short] = 0
    attention_mask = torch.cat([prompt_mask, mask], dim=1)
    position_ids = ppo.positions(attention_mask)
    start = width - 1
    logprobs = action_logprobs(actor, seq, attention_mask, position_ids, start)
    ref_logprobs = action_logprobs(ref, seq, attention_mask, position_ids, start)
    values = action_values(critic, seq, attention_mask, position_ids, start)
    score = end_scores(reward(seq, attention_mask, position_ids).float(), attention_mask)
    rewards = ppo.shaped_rewards(logprobs, ref_logprobs, score, mask, args.kl_ctl, args.clip_reward_value)
    advantages, returns = ppo.gae(rewards, values, mask, args.gamma, args.lam)
    actor.train(), critic.train()
    return Experience(seq, attention_mask, position_ids, start, mask, logprobs, ref_logprobs, values, score, advantages, returns), int(short.sum())


def train_on(exp: Experience, actor, critic, args, unsup: dict | None, ema: EMA | None) -> dict:
    """One micro-batch: the actor's PPO step (with PTX), then the critic's."""
    logprobs = action_logprobs(actor, exp.seq, exp.attention_mask, exp.position_ids, exp.start)
    actor_loss, actor_clip = ppo.actor_loss(logprobs, exp.logprobs, exp.advantages, exp.mask, args.cliprange)
    actor.backward(actor_loss)
    actor.step()
    out = {"actor_loss": actor_loss.item(), "actor_clipfrac": actor_clip.item()}
    if unsup is not None:
        # The actor accumulates twice as many micro-steps with PTX, so this and the PPO loss make one update.
        ptx_loss = actor(**unsup, use_cache=False).loss
        actor.backward(args.unsup_coef * ptx_loss)
        actor.step()
        out["ptx_loss"] = ptx_loss.item()
    if ema is not None:
        ema.update(actor.module)
    values = action_values(critic, exp.seq, exp.attention_mask, exp.position_ids, exp.start)
    critic_loss, critic_clip = ppo.critic_loss(values, exp.values, exp.returns, exp.mask, args.cliprange_value)
    critic.backward(critic_loss)
    critic.step()
    return {**out, "critic_loss": critic_loss.item(), "critic_clipfrac": critic_clip.item()}


def trained_engine(model, args, world: int, lr: float, weight_decay: float, zero_stage: int, accumulation: int, updates: int):
    role = argparse.Namespace(
        per_device_train_batch_size=args.per_device_training_batch_size, gradient_accumulation_steps=accumulation,
        learning_rate=lr, weight_decay=weight_decay, zero_stage=zero_stage, offload=args.offload, dtype=args.dtype,
        lr_scheduler_type=args.lr_scheduler_type, num_warmup_steps=args.num_warmup_steps, max_steps=updates, num_train_epochs=1,
    )
    engine, _ = runtime.engine(model, role, world, batches_per_epoch=updates)
    return engine


def frozen_engine(model, args, world: int, offload: bool):
    """An inference-only engine: ZeRO-3 when the actor is (or to offload its parameters), else plain."""
    import deepspeed

    stage = 3 if (args.actor_zero_stage == 3 or offload) else 0
    role = argparse.Namespace(per_device_train_batch_size=args.per_device_training_batch_size, gradient_accumulation_steps=1,
                              zero_stage=stage, offload=False, dtype=args.dtype)
    config = runtime.ds_config(role, world)
    if offload:
        config["zero_optimization"]["offload_param"] = {"device": "cpu"}
    engine, *_ = deepspeed.initialize(model=model.requires_grad_(False), config=config)
    engine.eval()
    return engine


def micro_batches(experiences: list[Experience], unsup: list[dict] | None, size: int):
    """(experience slice, matching PTX slice or None), in order."""
    for i, exp in enumerate(experiences):
        for lo in range(0, exp.seq.shape[0], size):
            part = slice(lo, lo + size)
            yield exp.rows(part), ({k: v[part] for k, v in unsup[i].items()} if unsup else None)


def cycle(loader):
    """The loader's batches forever, reshuffled every pass."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


class RoundLog:
    """Sums over one PPO round, averaged over all ranks at the end of the round."""

    def __init__(self, device):
        self.device = device
        self.rollout = torch.zeros(5, dtype=torch.float64, device=device)  # answers kept, short, reward, kl, answer tokens
        self.loss_sums: dict[str, float] = {}
        self.micro = 0
        self.generation_s = 0.0

    def experience(self, exp: Experience, short: int, seconds: float) -> None:
        kept = exp.mask.sum(dim=1) > 0
        kl = ((exp.logprobs - exp.ref_logprobs) * exp.mask).sum(dim=1)
        self.rollout += torch.stack([kept.sum(), torch.tensor(short, device=self.device), exp.score[kept].sum(), kl[kept].sum(),
                                     exp.mask.sum()]).double()
        self.generation_s += seconds

    def losses(self, values: dict) -> None:
        for k, v in values.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v
        self.micro += 1

    def summary(self, training_s: float) -> dict:
        names = sorted(self.loss_sums)
        losses = torch.tensor([self.loss_sums[k] / max(1, self.micro) for k in names], dtype=torch.float64, device=self.device)
        totals = torch.cat([self.rollout, losses])
        torch.distributed.all_reduce(totals)
        world = torch.distributed.get_world_size()
        kept, short, reward, kl, tokens = totals[:5].tolist()
        row = {"reward": reward / max(kept, 1), "kl": kl / max(kept, 1), "answer_len": tokens / max(kept, 1),
               "answers": int(kept), "dropped_short": int(short)}
        row.update({k: v / world for k, v in zip(names, totals[5:].tolist())})
        return {**row, "generation_s": self.generation_s, "training_s": training_s}


def main(argv=None) -> None:
    args = parse_args(argv)
    rank, world, device = runtime.init_distributed()
    torch.manual_seed(args.seed + rank)  # ranks sample different answers
    tokenizer = runtime.shard_tokenizer(args.shards)

    prompts = ShardDataset(args.shards, 3, "train")
    width = args.max_prompt_seq_len or prompts.max_prompt_len
    if width < prompts.max_prompt_len:
        raise SystemExit(f"trainer: {args.shards} keeps prompts up to {prompts.max_prompt_len} tokens, more than --max_prompt_seq_len "
                         f"{width}; prepare with --max-prompt-len {width}")
    pad = runtime.pad_id(tokenizer)
    prompt_loader = runtime.loader(prompts, PromptCollator(pad, pad_to=width if args.pad_to_max else None),
                                   args.per_device_generation_batch_size, rank, world, args.seed, shuffle=True)
    ptx = args.unsup_shards is not None and args.unsup_coef > 0
    unsup_batches = cycle(runtime.loader(ShardDataset(args.unsup_shards, "unsup"), BlockCollator(), args.per_device_generation_batch_size,
                                         rank, world, args.seed, shuffle=True)) if ptx else None

    prompt_batches = args.max_steps or len(prompt_loader) * args.num_train_epochs
    rounds = prompt_batches // args.generation_batches
    micro_per_round = args.generation_batches * -(-args.per_device_generation_batch_size // args.per_device_training_batch_size) * args.ppo_epochs
    updates = max(1, rounds * micro_per_round // args.gradient_accumulation_steps)
    accumulation = args.gradient_accumulation_steps * (2 if ptx else 1)

    actor_model = causal_lm(args.actor_model_name_or_path, None, tokenizer, **dropout_overrides(args.actor_model_name_or_path, args.actor_dropout))
    runtime.check_tokenizer(args.shards, args.actor_model_name_or_path, actor_model.config)
    critic_model = RewardModel.from_pretrained(args.critic_model_name_or_path, **dropout_overrides(args.critic_model_name_or_path, args.critic_dropout))
    runtime.check_tokenizer(args.shards, args.critic_model_name_or_path, critic_model.config)
    if args.actor_gradient_checkpointing:
        actor_model.gradient_checkpointing_enable()
    if args.critic_gradient_checkpointing:
        critic_model.backbone.gradient_checkpointing_enable()
    ema = EMA(actor_model, args.ema_beta, args.actor_zero_stage) if args.enable_ema else None
    ref = frozen_engine(causal_lm(args.actor_model_name_or_path, None, tokenizer), args, world, args.offload_reference_model)
    reward = frozen_engine(RewardModel.from_pretrained(args.critic_model_name_or_path), args, world, args.offload_reward_model)
    actor = trained_engine(actor_model, args, world, args.actor_learning_rate, args.actor_weight_decay, args.actor_zero_stage, accumulation, updates)
    critic = trained_engine(critic_model, args, world, args.critic_learning_rate, args.critic_weight_decay, args.critic_zero_stage,
                            args.gradient_accumulation_steps, updates)
    if ema is not None:
        ema.model.to(device)

    metrics = runtime.Metrics(args.output_dir / "metrics.jsonl", rank == 0)
    step, epoch, reward_ema = 0, 0, None
    buffer, unsup_buffer = [], []
    log = RoundLog(device)
    while step < prompt_batches:
        prompt_loader.sampler.set_epoch(epoch)
        for batch in prompt_loader:
            started = time.perf_counter()
            exp, short = make_experience({k: v.to(device) for k, v in batch.items()}, actor, ref, critic, reward, args, tokenizer)
            buffer.append(exp)
            if ptx:
                unsup_buffer.append({k: v.to(device) for k, v in next(unsup_batches).items()})
            log.experience(exp, short, time.perf_counter() - started)
            step += 1
            if len(buffer) == args.generation_batches:
                started = time.perf_counter()
                if args.whiten_advantages:
                    for e in buffer:
                        e.advantages = ppo.whiten(e.advantages, e.mask)
                for _ in range(args.ppo_epochs):
                    for part, unsup in micro_batches(buffer, unsup_buffer if ptx else None, args.per_device_training_batch_size):
                        log.losses(train_on(part, actor, critic, args, unsup, ema))
                buffer, unsup_buffer = [], []
                row = log.summary(time.perf_counter() - started)
                reward_ema = row["reward"] if reward_ema is None else 0.9 * reward_ema + 0.1 * row["reward"]
                metrics.log(step=step, epoch=epoch, reward_ema=reward_ema, actor_lr=actor.get_lr()[0], critic_lr=critic.get_lr()[0], **row)
                log = RoundLog(device)
            if step >= prompt_batches:
                break
        epoch += 1

    save_model(actor.module, args.output_dir / "actor", rank, args.actor_zero_stage)
    save_model(critic.module, args.output_dir / "critic", rank, args.critic_zero_stage)
    if ema is not None:
        save_model(ema.model, args.output_dir / "actor_ema", rank, zero_stage=0)
    if rank == 0:
        for name in ("actor", "critic") + (("actor_ema",) if ema is not None else ()):
            save_tokenizer(tokenizer, args.output_dir / name)
        metrics.plot(args.output_dir / "ppo.png", panels=(("reward", "reward_ema"), ("kl",), ("actor_loss", "critic_loss"), ("ptx_loss",), ("answer_len",)))
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
