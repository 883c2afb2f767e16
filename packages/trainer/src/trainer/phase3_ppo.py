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
     actor's EMA (--enable_ema) after each of the actor's optimizer updates.
Flag names and defaults are DeepSpeed-Chat's; ppo.py lists where the maths differs from it and why.
Differences in the loop: answers are sampled with a generation config of our own, never the
checkpoint's generation_config.json (its repetition penalty, say, would sample from another
distribution than the one PPO scores; rank 0 names what it ignores); experience comes from eval mode
(DeepSpeed-Chat scores in train mode, so dropout makes the first PPO ratio differ from 1); answers of
at most one token are masked out of the losses and counted, so every rank runs the same steps
(DeepSpeed-Chat reuses the previous batch); unsupervised blocks are cycled when they run out, so the
prompts set the epoch length. Every checkpoint's tokenizer is checked against the shards' before any
weights load.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from dataprep.format import TokenizerInfo
from trainer import flags as F, lora, ppo, resume, runtime
from trainer.checkpoint import save_model, save_tokenizer
from trainer.collate import BlockCollator, PromptCollator
from trainer.ema import EMA
from trainer.lora import LoraSpec
from trainer.models import causal_lm, load_config, partitioned
from trainer.reward import RewardModel, end_scores
from trainer.shard_dataset import ShardDataset

if TYPE_CHECKING:
    from transformers import GenerationConfig


@dataclass(frozen=True, kw_only=True)
class PPOFlags(F.RunFlags):
    actor_model_name_or_path: str = F.flag(help="the phase-1 (SFT) checkpoint: actor and reference")
    critic_model_name_or_path: str = F.flag(help="the phase-2 checkpoint: critic and reward model")
    unsup_shards: Path | None = F.flag(None, "a prepare output with --unsup blocks: enables the PTX loss")
    unsup_coef: float = F.flag(27.8, "weight of the PTX loss (InstructGPT's gamma)")
    per_device_generation_batch_size: int = F.flag(16, "prompts per generation batch on each rank")
    per_device_training_batch_size: int = F.flag(16, "rollouts per PPO micro-batch on each rank")
    generation_batches: int = F.flag(1, "prompt batches of experience per PPO round")
    ppo_epochs: int = F.flag(1, "passes over each round's experience")
    max_prompt_seq_len: int | None = F.flag(None, "prompt width (default: the shards' --max-prompt-len)")
    max_answer_seq_len: int = F.flag(256, "new tokens per answer at most")
    pad_to_max: bool = F.flag(False, "left-pad every prompt batch to max_prompt_seq_len, as DeepSpeed-Chat does")
    temperature: float = F.flag(1.0, "sampling temperature (1.0: the policy itself; 0: greedy decoding, as DeepSpeed-Chat's "
                                      "generate does); the PPO ratio uses the log-probs of the distribution that sampled")
    top_p: float = F.flag(1.0, "nucleus sampling: only 1.0, see docs/ppo.md")
    generate_partitioned: bool = F.flag(False, "ZeRO-3: generate with the actor partitioned, gathering its layers again for every "
                                               "new token (slow; for an actor too large to hold whole on one device). Default: its "
                                               "parameters are gathered once per generation batch")
    actor_learning_rate: float = F.flag(9.65e-6, "the actor's peak learning rate")
    critic_learning_rate: float = F.flag(5e-6, "the critic's peak learning rate")
    actor_weight_decay: float = F.flag(0.0, "the actor's AdamW weight decay")
    critic_weight_decay: float = F.flag(0.0, "the critic's AdamW weight decay")
    max_steps: int = F.flag(0, "stop after this many prompt batches (0: run the epochs)")
    num_warmup_steps: int = F.flag(100, "linear warm-up steps of both optimizers")
    actor_zero_stage: int = F.flag(0, "ZeRO stage of the actor (and of the reference, at 3)", F.ZERO_STAGES)
    critic_zero_stage: int = F.flag(0, "ZeRO stage of the critic", F.ZERO_STAGES)
    offload: bool = F.flag(False, "ZeRO CPU offload of the actor's and critic's optimizer state")
    offload_reference_model: bool = F.flag(False, "ZeRO-3 with parameters on the CPU for the reference")
    offload_reward_model: bool = F.flag(False, "ZeRO-3 with parameters on the CPU for the reward model")
    actor_gradient_checkpointing: bool = F.flag(False, "recompute the actor's activations in the backward pass")
    critic_gradient_checkpointing: bool = F.flag(False, "recompute the critic's activations in the backward pass")
    actor_dropout: float | None = F.flag(None, "set every dropout of the actor (DeepSpeed-Chat's scripts use 0.0)")
    critic_dropout: float | None = F.flag(None, "set every dropout of the critic")
    actor_lora_dim: int = F.flag(0, "LoRA rank on the actor's layers that --actor_lora_module_name picks (0: no LoRA)")
    actor_lora_module_name: str = F.flag("decoder.layers.", "LoRA on every linear layer of the actor whose name contains this")
    critic_lora_dim: int = F.flag(0, "LoRA rank on the critic's layers that --critic_lora_module_name picks (0: no LoRA)")
    critic_lora_module_name: str = F.flag("decoder.layers.", "LoRA on every linear layer of the critic whose name contains this")
    only_optimize_lora: bool = F.flag(False, "train the LoRA weights alone (and the critic's value head)")
    actor_lora_learning_rate: float = F.flag(5e-4, "the actor's LoRA weights' peak learning rate")
    critic_lora_learning_rate: float = F.flag(5e-4, "the critic's LoRA weights' peak learning rate")
    enable_ema: bool = F.flag(False, "keep an EMA of the actor (beta --ema_beta), saved to OUTPUT_DIR/actor_ema")
    ema_beta: float = F.flag(0.992, "the EMA's decay")
    kl_ctl: float = F.flag(0.1, "KL penalty coefficient")
    clip_reward_value: float = F.flag(5.0, "the reward model's score is clipped to +-this")
    cliprange: float = F.flag(0.2, "PPO ratio clip of the actor")
    cliprange_value: float = F.flag(0.2, "value clip of the critic")
    gamma: float = F.flag(1.0, "discount")
    lam: float = F.flag(0.95, "GAE lambda")
    whiten_advantages: bool = F.flag(False, "normalise advantages over each generation batch")

    def __post_init__(self) -> None:
        if self.offload and 0 in (self.actor_zero_stage, self.critic_zero_stage):
            raise ValueError(F.OFFLOAD_NEEDS_ZERO + " (--actor_zero_stage and --critic_zero_stage)")
        if self.temperature < 0:
            raise ValueError(f"--temperature {self.temperature}: must be 0 (greedy) or more")
        if min(self.actor_lora_dim, self.critic_lora_dim) < 0:
            raise ValueError("--actor_lora_dim and --critic_lora_dim are ranks: 0 (no LoRA) or more")
        if self.top_p != 1.0:
            raise ValueError(f"--top_p {self.top_p}: nucleus sampling draws from a truncated, renormalised distribution whose "
                             "log-probs the PPO ratio would need at every step; use --top_p 1 (as TRL's and OpenRLHF's PPO do) "
                             "and --temperature to sharpen or flatten the policy")

    @property
    def actor_lora(self) -> LoraSpec:
        return LoraSpec(self.actor_lora_dim, self.actor_lora_module_name, self.only_optimize_lora, self.actor_lora_learning_rate)

    @property
    def critic_lora(self) -> LoraSpec:
        return LoraSpec(self.critic_lora_dim, self.critic_lora_module_name, self.only_optimize_lora, self.critic_lora_learning_rate)


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


def action_logprobs(model, seq: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, start: int,
                    temperature: float) -> torch.Tensor:
    """Log-probs of the answer tokens under the distribution generation sampled from: the logits divided
    by the temperature (greedy decoding, temperature 0, scores with the policy itself)."""
    logits = model(input_ids=seq, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).logits[:, start:-1]
    return ppo.gather_logprobs(logits / temperature if temperature > 0 else logits, seq[:, start + 1 :])


def action_values(critic, seq: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, start: int) -> torch.Tensor:
    return critic(seq, attention_mask, position_ids)[:, start:-1].float()


@contextmanager
def generation_model(actor, flags: PPOFlags) -> Iterator[torch.nn.Module]:
    """The actor's module to generate with. Under ZeRO-3 its parameters are gathered once for the whole
    generation batch (DeepSpeed's unwrap_model_for_generation, as TRL and OpenRLHF do), not layer by
    layer for every new token, unless --generate_partitioned."""
    if flags.actor_zero_stage != 3 or flags.generate_partitioned:
        yield actor.module
        return
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    with unwrap_model_for_generation(actor):
        yield actor.module


# The fields of a generation config that change which token is drawn, or end an answer early, each with
# the value at which it does nothing (transformers then adds no logits processor, warper or stopping
# criterion for it, and decodes one sequence without beams). Phase 3 sets none of them.
NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None, "min_length": 0,
    "min_new_tokens": 0, "forced_bos_token_id": None, "forced_eos_token_id": None, "exponential_decay_length_penalty": None,
    "min_p": None, "top_h": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "guidance_scale": 1.0,
    "watermarking_config": None, "renormalize_logits": False, "remove_invalid_values": False, "stop_strings": None,
    "max_time": None, "num_beams": 1, "num_return_sequences": 1, "penalty_alpha": None, "dola_layers": None,
}
SAMPLING_CHOICE = ("do_sample", "temperature", "top_k", "top_p")


def generation_config(tokenizer: TokenizerInfo, flags: PPOFlags) -> "GenerationConfig":
    """What the actor samples with: the shards' special ids, the answer length and the sampling choice,
    and nothing else. The PPO ratio and the KL score answers with log_softmax(logits / T), so any other
    processor (a checkpoint's repetition penalty, banned n-grams or tokens, top-k, a minimum length)
    would make the sampling distribution differ from the scored one."""
    from transformers import GenerationConfig

    greedy = flags.temperature == 0
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": flags.temperature, "top_k": 0, "top_p": 1.0}
    return GenerationConfig(max_new_tokens=flags.max_answer_seq_len, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_or_eos,
                            bos_token_id=tokenizer.bos_id, **sampling)


def ignored_generation_fields(checkpoint: "GenerationConfig", ours: "GenerationConfig") -> dict[str, object]:
    """The fields of the checkpoint's generation config (generation_config.json) that would change the
    sampled distribution, with their values: phase 3 ignores them (`sample`). Ours sets the sampling
    choice (greedy: do_sample alone) and leaves every other field neutral."""
    chosen = {name: getattr(ours, name) for name in SAMPLING_CHOICE if getattr(ours, name) is not None}
    expected = {**NEUTRAL_GENERATION, **chosen}
    return {name: value for name, neutral in expected.items() if (value := getattr(checkpoint, name, None)) is not None and value != neutral}


def sample(model, prompt: torch.Tensor, prompt_mask: torch.Tensor, config: "GenerationConfig", synced_gpus: bool = False) -> torch.Tensor:
    """`model.generate` under `config` alone. generate fills every field its config leaves unset from
    `model.generation_config` (the checkpoint's generation_config.json), so that is swapped for `config`
    for the call: nothing of the checkpoint's reaches the draw."""
    saved, model.generation_config = model.generation_config, config
    try:
        return model.generate(prompt, attention_mask=prompt_mask, generation_config=config, synced_gpus=synced_gpus)
    finally:
        model.generation_config = saved


@torch.no_grad()
def make_experience(batch: dict, actor, ref, critic, reward, flags: PPOFlags, tokenizer: TokenizerInfo) -> tuple[Experience, int, float]:
    """Rollouts for one prompt batch, scored with every model in eval mode; also returns how many
    answers were too short (at most one token) and are masked out, and the seconds `generate` took."""
    actor.eval(), critic.eval()
    prompt, prompt_mask = batch["prompt"], batch["prompt_att_mask"]
    lockstep = flags.actor_zero_stage == 3 and flags.generate_partitioned  # every rank must then decode in step
    started = time.perf_counter()
    with generation_model(actor, flags) as model:
        seq = sample(model, prompt, prompt_mask, generation_config(tokenizer, flags), synced_gpus=lockstep)
    generate_s = time.perf_counter() - started
    width = prompt.shape[1]
    mask = ppo.answer_mask(seq[:, width:], tokenizer.eos_id)
    short = mask.sum(dim=1) <= 1
    mask[short] = 0
    attention_mask = torch.cat([prompt_mask, mask], dim=1)
    position_ids = ppo.positions(attention_mask)
    start = width - 1
    logprobs = action_logprobs(actor, seq, attention_mask, position_ids, start, flags.temperature)
    ref_logprobs = action_logprobs(ref, seq, attention_mask, position_ids, start, flags.temperature)
    values = action_values(critic, seq, attention_mask, position_ids, start)
    score = end_scores(reward(seq, attention_mask, position_ids).float(), attention_mask)
    rewards = ppo.shaped_rewards(logprobs, ref_logprobs, score, mask, flags.kl_ctl, flags.clip_reward_value)
    advantages, returns = ppo.gae(rewards, values, mask, flags.gamma, flags.lam)
    actor.train(), critic.train()
    exp = Experience(seq, attention_mask, position_ids, start, mask, logprobs, ref_logprobs, values, score, advantages, returns)
    return exp, int(short.sum()), generate_s


def micro_step(engine) -> bool:
    """`engine.step()`; whether it was an optimizer update (DeepSpeed's accumulation boundary, which
    must be asked before the step: the step moves the micro-step counter on)."""
    update = engine.is_gradient_accumulation_boundary()
    engine.step()
    return update


def train_on(exp: Experience, unsup: dict | None, actor, critic, flags: PPOFlags, ema: EMA | None) -> dict:
    """One micro-batch: the actor's PPO step (with PTX), then the critic's. The EMA follows the actor's
    optimizer updates, not its micro-batches: with gradient accumulation the weights change once per
    --gradient_accumulation_steps micro-batches, and beta is a decay per update."""
    logprobs = action_logprobs(actor, exp.seq, exp.attention_mask, exp.position_ids, exp.start, flags.temperature)
    actor_loss, actor_clip = ppo.actor_loss(logprobs, exp.logprobs, exp.advantages, exp.mask, flags.cliprange)
    actor.backward(actor_loss)
    updated = micro_step(actor)
    out = {"actor_loss": actor_loss.item(), "actor_clipfrac": actor_clip.item()}
    if unsup is not None:
        # The actor accumulates twice as many micro-steps with PTX, so this and the PPO loss make one update.
        ptx_loss = actor(**unsup, use_cache=False).loss
        actor.backward(flags.unsup_coef * ptx_loss)
        updated = micro_step(actor)
        out["ptx_loss"] = ptx_loss.item()
    if ema is not None and updated:
        ema.update(actor.module)
    values = action_values(critic, exp.seq, exp.attention_mask, exp.position_ids, exp.start)
    critic_loss, critic_clip = ppo.critic_loss(values, exp.values, exp.returns, exp.mask, flags.cliprange_value)
    critic.backward(critic_loss)
    critic.step()
    return {**out, "critic_loss": critic_loss.item(), "critic_clipfrac": critic_clip.item()}


def micro_batches(experiences: list[Experience], unsup: list[dict] | None, size: int) -> list[tuple[Experience, dict | None]]:
    """(experience slice, the PTX slice at the same rows or None) for every micro-batch of a round.
    The PTX batches are as large as the prompt batches (their loader drops short last batches), so
    no slice is ever empty."""
    parts = []
    for i, exp in enumerate(experiences):
        for lo in range(0, exp.seq.shape[0], size):
            part = slice(lo, lo + size)
            parts.append((exp.rows(part), {k: v[part] for k, v in unsup[i].items()} if unsup else None))
    return parts


def epoch_order(count: int, epoch: int, generator: torch.Generator) -> list[int]:
    """The micro-batch order of one PPO epoch: collection order first, then reshuffled between epochs,
    as DeepSpeed-Chat shuffles its experience after every epoch."""
    return list(range(count)) if epoch == 0 else torch.randperm(count, generator=generator).tolist()


class Blocks:
    """The PTX batches, endlessly: the prompts set the epoch length, so the blocks are cycled, with a
    new shuffle every pass. Its position (pass, batches taken) goes into resumable checkpoints."""

    def __init__(self, loader):
        if len(loader) == 0:
            raise SystemExit(f"trainer: --unsup_shards holds fewer PTX blocks per rank ({len(loader.sampler)}) than one batch "
                             f"({loader.batch_size}); prepare more --unsup text or lower --per_device_generation_batch_size")
        self.loader, self.epoch, self.taken, self._batches = loader, 0, 0, None

    def next(self) -> dict:
        while True:
            if self._batches is None:
                self.loader.sampler.set_epoch(self.epoch)
                self.loader.sampler.skip = self.taken * self.loader.batch_size
                self._batches = iter(self.loader)
            batch = next(self._batches, None)
            if batch is not None:
                self.taken += 1
                return batch
            self.epoch, self.taken, self._batches = self.epoch + 1, 0, None

    def position(self) -> dict:
        return {"epoch": self.epoch, "taken": self.taken}

    def restore(self, position: dict) -> None:
        self.epoch, self.taken, self._batches = position["epoch"], position["taken"], None


class RoundLog:
    """Sums over one PPO round, averaged over all ranks at the end of the round."""

    def __init__(self, device):
        self.device = device
        self.rollout = torch.zeros(5, dtype=torch.float64, device=device)  # answers kept, short, reward, kl, answer tokens
        self.loss_sums: dict[str, float] = {}
        self.micro = 0
        self.generation_s = self.generate_s = 0.0

    def experience(self, exp: Experience, short: int, seconds: float, generate_s: float) -> None:
        kept = exp.mask.sum(dim=1) > 0
        kl = ((exp.logprobs - exp.ref_logprobs) * exp.mask).sum(dim=1)
        self.rollout += torch.stack([kept.sum(), torch.tensor(short, device=self.device), exp.score[kept].sum(), kl[kept].sum(),
                                     exp.mask.sum()]).double()
        self.generation_s += seconds
        self.generate_s += generate_s

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
        # generation_s: making experience (sampling and scoring with the four models); generate_s: its sampling part.
        return {**row, "generation_s": self.generation_s, "generate_s": self.generate_s, "training_s": training_s,
                **runtime.peak_memory(self.device)}


@runtime.one_line_errors
def main(argv: list[str] | None = None) -> None:
    flags = F.parse(PPOFlags, "Phase 3 (PPO) on dataprep shards.", argv)
    rank, world, device = runtime.init_distributed()
    torch.manual_seed(flags.seed + rank)  # ranks sample different answers

    prompts = ShardDataset(flags.shards, 3, "train")
    tokenizer = prompts.tokenizer
    width = flags.max_prompt_seq_len or prompts.max_prompt_len
    if width < prompts.max_prompt_len:
        raise SystemExit(f"trainer: {flags.shards} keeps prompts up to {prompts.max_prompt_len} tokens, more than --max_prompt_seq_len "
                         f"{width}; prepare with --max-prompt-len {width}")
    # Whole batches only, prompts and PTX blocks alike: every round then has the same micro-batches, so
    # optimizer steps line up with rounds, and a PTX slice is never empty. What a pass leaves out changes
    # with every epoch's reshuffle.
    prompt_loader = runtime.loader(prompts, PromptCollator(tokenizer.pad_or_eos, pad_to=width if flags.pad_to_max else None),
                                   flags.per_device_generation_batch_size, rank, world, flags.seed, shuffle=True, drop_last=True)
    if len(prompt_loader) == 0:
        raise SystemExit(f"trainer: {flags.shards} holds fewer phase-3 prompts per rank ({len(prompt_loader.sampler)}) than one "
                         f"generation batch ({flags.per_device_generation_batch_size}); lower --per_device_generation_batch_size")
    # Every model against the shards' tokenizer before any weights load (the reference loads the actor's
    # checkpoint, the reward model the critic's): a mismatch costs a config read, not four models.
    for path in dict.fromkeys((flags.actor_model_name_or_path, flags.critic_model_name_or_path)):
        runtime.check_tokenizer(flags.shards, tokenizer, path, load_config(path))
    ptx = flags.unsup_shards is not None and flags.unsup_coef > 0
    unsup = ShardDataset(flags.unsup_shards, "unsup") if ptx else None
    identity = resume.identity("phase3_ppo", flags, tokenizer=tokenizer.fingerprint, shards=prompts.cache_key, world=world,
                               unsup_shards=unsup.cache_key if unsup else None)
    if resume.check(flags.output_dir, flags.resume_from, identity, rank):
        return
    blocks = Blocks(runtime.loader(unsup, BlockCollator(), flags.per_device_generation_batch_size,
                                   rank, world, flags.seed, shuffle=True, drop_last=True)) if ptx else None

    prompt_batches = flags.max_steps or len(prompt_loader) * flags.num_train_epochs
    rounds = prompt_batches // flags.generation_batches
    micro_per_round = flags.generation_batches * -(-flags.per_device_generation_batch_size // flags.per_device_training_batch_size) * flags.ppo_epochs
    if micro_per_round % flags.gradient_accumulation_steps:
        raise SystemExit(f"trainer: --gradient_accumulation_steps {flags.gradient_accumulation_steps} does not divide the {micro_per_round} "
                         "micro-batches of a PPO round (generation_batches x generation/training batch x ppo_epochs), so an update "
                         "would mix two rounds' experience; choose a divisor")
    updates = max(1, rounds * micro_per_round // flags.gradient_accumulation_steps)
    # With PTX the actor takes two backward passes per micro-batch (PPO, then the LM loss) for one update.
    accumulation = flags.gradient_accumulation_steps * (2 if ptx else 1)

    # The four engines. The reference follows the actor's ZeRO stage and the reward model the critic's
    # (as DeepSpeed-Chat), or ZeRO-3 to offload their parameters; under ZeRO-3 every model is built
    # partitioned. The EMA is partitioned like the actor.
    micro = flags.per_device_training_batch_size
    specs = {
        "actor": runtime.EngineSpec(micro, accumulation, flags.actor_zero_stage, flags.dtype, flags.offload),
        "critic": runtime.EngineSpec(micro, flags.gradient_accumulation_steps, flags.critic_zero_stage, flags.dtype, flags.offload),
        "ref": runtime.EngineSpec(micro, 1, 3 if flags.actor_zero_stage == 3 or flags.offload_reference_model else 0, flags.dtype,
                                  offload_params=flags.offload_reference_model),
        "reward": runtime.EngineSpec(micro, 1, 3 if flags.critic_zero_stage == 3 or flags.offload_reward_model else 0, flags.dtype,
                                     offload_params=flags.offload_reward_model),
    }
    config = {name: runtime.ds_config(spec, world) for name, spec in specs.items()}
    with partitioned(config["actor"]):
        actor_model = causal_lm(flags.actor_model_name_or_path, None, tokenizer, flags.actor_dropout)
    with partitioned(config["critic"]):
        critic_model = RewardModel.from_pretrained(flags.critic_model_name_or_path, flags.critic_dropout)
    actor_model, critic_model = lora.add(actor_model, flags.actor_lora), lora.add(critic_model, flags.critic_lora)
    if rank == 0:
        print(f"trainer: actor {lora.trainable_summary(actor_model)}; critic {lora.trainable_summary(critic_model)}", flush=True)
        ignored = ignored_generation_fields(actor_model.generation_config, generation_config(tokenizer, flags))
        if ignored:
            print(f"trainer: phase 3 samples from the policy itself; ignoring {flags.actor_model_name_or_path}'s generation_config.json: "
                  f"{', '.join(f'{name}={value}' for name, value in ignored.items())}", flush=True)
    if flags.actor_gradient_checkpointing:
        actor_model.gradient_checkpointing_enable()
    if flags.critic_gradient_checkpointing:
        critic_model.gradient_checkpointing_enable()
    ema = None
    if flags.enable_ema and flags.actor_zero_stage == 3:
        ema_config = runtime.ds_config(replace(specs["actor"], dtype="fp32", offload=False), world)
        with partitioned(ema_config):
            ema_model = causal_lm(flags.actor_model_name_or_path, None, tokenizer)
        ema = EMA(lora.partitioned_like(lora.add(ema_model, flags.actor_lora), actor_model, ema_config), flags.ema_beta, partitioned=True)
    elif flags.enable_ema:
        ema = EMA(copy.deepcopy(actor_model).to(device), flags.ema_beta)
    with partitioned(config["ref"]):
        ref = runtime.frozen_engine(causal_lm(flags.actor_model_name_or_path, None, tokenizer), specs["ref"], world)
    with partitioned(config["reward"]):
        reward = runtime.frozen_engine(RewardModel.from_pretrained(flags.critic_model_name_or_path), specs["reward"], world)

    def optim(lr: float, weight_decay: float, lora_lr: float) -> runtime.OptimSpec:
        return runtime.OptimSpec(lr, weight_decay, flags.lr_scheduler_type, flags.num_warmup_steps, updates, lora_lr)

    actor = runtime.trained_engine(actor_model, specs["actor"], optim(flags.actor_learning_rate, flags.actor_weight_decay,
                                                                       flags.actor_lora_learning_rate), world)
    critic = runtime.trained_engine(critic_model, specs["critic"], optim(flags.critic_learning_rate, flags.critic_weight_decay,
                                                                          flags.critic_lora_learning_rate), world)

    # Resume, or start afresh.
    shuffler = torch.Generator().manual_seed(flags.seed + rank)  # the micro-batch order between PPO epochs
    record = resume.restore(flags.output_dir, flags.resume_from, {"actor": actor, "critic": critic}, identity, rank, {"shuffler": shuffler})
    position = record["position"] if record else {"step": 0, "epoch": 0, "batches": 0, "reward_ema": None, "blocks": None}
    if ema is not None and record:
        ema.load(resume.read_state(record["dir"], "ema", rank))
    if blocks is not None and position["blocks"]:
        blocks.restore(position["blocks"])
    metrics = runtime.Metrics(flags.output_dir / "metrics.jsonl", rank == 0, keep=record["metrics_lines"] if record else 0)
    step, epoch, batches, reward_ema = position["step"], position["epoch"], position["batches"], position["reward_ema"]
    prompt_loader.sampler.skip = batches * flags.per_device_generation_batch_size

    buffer, unsup_buffer = [], []
    log = RoundLog(device)
    while step < prompt_batches:
        prompt_loader.sampler.set_epoch(epoch)
        for batch in prompt_loader:
            started = time.perf_counter()
            exp, short, generate_s = make_experience({k: v.to(device) for k, v in batch.items()}, actor, ref, critic, reward, flags, tokenizer)
            buffer.append(exp)
            if ptx:
                unsup_buffer.append({k: v.to(device) for k, v in blocks.next().items()})
            log.experience(exp, short, time.perf_counter() - started, generate_s)
            step, batches = step + 1, batches + 1
            if len(buffer) == flags.generation_batches:
                started = time.perf_counter()
                if flags.whiten_advantages:
                    for e in buffer:
                        e.advantages = ppo.whiten(e.advantages, e.mask)
                parts = micro_batches(buffer, unsup_buffer if ptx else None, flags.per_device_training_batch_size)
                for ppo_epoch in range(flags.ppo_epochs):
                    for i in epoch_order(len(parts), ppo_epoch, shuffler):
                        log.losses(train_on(*parts[i], actor, critic, flags, ema))
                buffer, unsup_buffer = [], []
                row = log.summary(time.perf_counter() - started)
                reward_ema = row["reward"] if reward_ema is None else 0.9 * reward_ema + 0.1 * row["reward"]
                metrics.log(step=step, epoch=epoch, reward_ema=reward_ema, actor_lr=actor.get_lr()[0], critic_lr=critic.get_lr()[0], **row)
                log = RoundLog(device)
                # A round is over: nothing is buffered, so this is where a resumable checkpoint can be cut.
                if flags.save_steps and step // flags.save_steps > (step - flags.generation_batches) // flags.save_steps and step < prompt_batches:
                    here = {"step": step, "epoch": epoch, "batches": batches, "reward_ema": reward_ema,
                            "blocks": blocks.position() if blocks else None}
                    keep = {"ema": ema.state()} if ema is not None and (ema.partitioned or rank == 0) else {}
                    resume.save(flags.output_dir, step, {"actor": actor, "critic": critic}, here, identity, metrics.lines, rank,
                                {"shuffler": shuffler}, keep)
                resume.kill_point(step)
            if step >= prompt_batches:
                break
        epoch, batches = epoch + 1, 0
        prompt_loader.sampler.skip = 0

    save_model(actor, flags.output_dir / "actor", rank, flags.actor_zero_stage)
    save_model(critic, flags.output_dir / "critic", rank, flags.critic_zero_stage)
    if ema is not None:
        save_model(ema.model, flags.output_dir / "actor_ema", rank, zero_stage=3 if ema.partitioned else 0)
    if rank == 0:
        for name in ("actor", "critic") + (("actor_ema",) if ema is not None else ()):
            save_tokenizer(tokenizer, flags.output_dir / name)
        metrics.plot(flags.output_dir / "ppo.png", panels=(("reward", "reward_ema"), ("kl",), ("actor_loss", "critic_loss"), ("ptx_loss",), ("answer_len",)))
    resume.finish(flags.output_dir, identity, step, rank)


if __name__ == "__main__":
    main()
