"""Phase 3 on CPU with tiny models built from configs, in the toy world of toy.py: a 16-word tokenizer
and a reward model whose score is a fixed function of the last token, highest for one word."""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataprep import PrepareOptions, prepare
from tests.conftest import GPT2, SHARED_HH, shared_gpt2, shared_hh
from tests.trainer.conftest import train
from tests.trainer.toy import (FAVOURED, TOP_SCORE, WORDS, with_generation_config, write_deepspeed_chat, write_documents, write_prompts,
                               write_tokenizer)
from trainer.reward import RewardModel


def ppo(toy: dict, out: Path, *flags: str, steps: int = 40, actor: Path | None = None, critic: Path | None = None) -> list[dict]:
    """A toy phase-3 run (the toy's actor and reward model unless `actor`, `critic`)."""
    return train("trainer.phase3_ppo", toy["shards"], out, "--actor_model_name_or_path", str(actor or toy["actor"]),
                 "--critic_model_name_or_path", str(critic or toy["reward"]), "--max_steps", str(steps),
                 "--per_device_generation_batch_size", "16", "--per_device_training_batch_size", "16", "--max_answer_seq_len", "4",
                 "--actor_learning_rate", "3e-3", "--critic_learning_rate", "3e-3", "--num_warmup_steps", "0",
                 "--lr_scheduler_type", "constant", *flags, model_flags=False)


def test_the_toy_reward_favours_one_token(toy):
    scores = toy["scores"][: len(WORDS)]
    assert scores.argmax().item() == WORDS.index(FAVOURED)
    assert scores.max().item() == pytest.approx(TOP_SCORE)
    assert scores.mean().item() < TOP_SCORE / 2


def test_ppo_raises_the_reward_with_a_finite_kl(toy, tmp_path):
    rows = ppo(toy, tmp_path / "run", "--enable_ema")
    rewards = [r["reward"] for r in rows]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 1.0, rewards
    assert all(math.isfinite(r["kl"]) and math.isfinite(r["actor_loss"]) and math.isfinite(r["critic_loss"]) for r in rows)
    assert rows[-1]["kl"] > 0  # the policy moved away from the reference
    for key in ("actor_clipfrac", "critic_clipfrac", "answer_len", "dropped_short", "generation_s", "training_s", "reward_ema"):
        assert key in rows[-1]
    assert "ptx_loss" not in rows[-1]
    # Hugging Face checkpoints of the actor, its EMA and the critic, each with the tokenizer.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    for name in ("actor", "actor_ema"):
        AutoModelForCausalLM.from_pretrained(out / name)
        AutoTokenizer.from_pretrained(out / name)
    critic = RewardModel.from_pretrained(out / "critic")
    assert not torch.equal(critic.v_head.weight, RewardModel.from_pretrained(toy["reward"]).v_head.weight)
    assert (out / "ppo.png").stat().st_size > 0


def lm_loss(model_dir: Path, shards: Path) -> float:
    """Mean LM loss of a checkpoint on every unsupervised block."""
    from transformers import AutoModelForCausalLM

    from trainer.collate import BlockCollator
    from trainer.shard_dataset import ShardDataset

    blocks = ShardDataset(shards, "unsup")
    batch = BlockCollator()([blocks[i] for i in range(len(blocks))])
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(model_dir)(**batch).loss.item()


def test_ptx_trains_the_actor_on_the_unsupervised_blocks_only_when_on(toy, tmp_path):
    before = lm_loss(toy["actor"], toy["shards"])
    off = ppo(toy, tmp_path / "off", steps=12)
    on = ppo(toy, tmp_path / "on", "--unsup_shards", str(toy["shards"]), steps=12)
    assert "ptx_loss" not in off[-1] and on[-1]["ptx_loss"] < on[0]["ptx_loss"]
    after_off, after_on = lm_loss(tmp_path / "off" / "actor", toy["shards"]), lm_loss(tmp_path / "on" / "actor", toy["shards"])
    # PPO alone barely changes the LM loss on text it never sees; with PTX the loss drops.
    assert after_on < before - 0.5, (before, after_on)
    assert abs(after_off - before) < (before - after_on) / 2, (before, after_off, after_on)


def test_ptx_with_zero_coefficient_is_off(toy, tmp_path):
    rows = ppo(toy, tmp_path / "zero", "--unsup_shards", str(toy["shards"]), "--unsup_coef", "0", steps=2)
    assert "ptx_loss" not in rows[-1]


@shared_hh
@shared_gpt2
def test_whole_chain_on_the_shared_hh_sample(tmp_path):
    """prepare -> phase 1 -> phase 2 -> phase 3, each phase starting from the previous checkpoint."""
    shards = tmp_path / "shards"
    prepare(PrepareOptions(data=["hh"], data_dir=SHARED_HH, out=shards, tokenizer=str(GPT2),
                           split="2,4,4", max_seq_len=128, max_prompt_len=96, progress=False))
    small = ("--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_steps", "6", "--eval_iters", "2")
    sft = train("trainer.phase1_sft", shards, tmp_path / "phase1", *small, "--learning_rate", "1e-3")
    rm = train("trainer.phase2_reward", shards, tmp_path / "phase2", *small)
    assert sft[-1]["eval_loss"] < sft[0]["eval_loss"] and "eval_accuracy" in rm[-1]
    rows = train("trainer.phase3_ppo", shards, tmp_path / "phase3", "--actor_model_name_or_path", str(tmp_path / "phase1"),
                 "--critic_model_name_or_path", str(tmp_path / "phase2"), "--max_steps", "3", "--per_device_generation_batch_size", "2",
                 "--per_device_training_batch_size", "2", "--max_answer_seq_len", "8", "--num_warmup_steps", "0", model_flags=False)
    assert len(rows) == 3 and all(math.isfinite(r["reward"]) for r in rows)
    assert (tmp_path / "phase3" / "actor" / "config.json").is_file() and (tmp_path / "phase3" / "critic" / "value_head.pt").is_file()


def test_ptx_never_gives_an_empty_micro_batch(toy, tmp_path):
    """20 PTX blocks, generation batch 16, training batch 4: a pass ends in a 4-block batch, which cut
    into micro-batches of 4 used to leave empty ones (a forward on a [0, L] batch raises)."""
    root = tmp_path / "few"
    root.mkdir()
    shards = root / "shards"
    prepare(PrepareOptions(data=[str(write_prompts(root / "prompts.jsonl", 200, seed=1))], out=shards,
                           tokenizer=str(write_tokenizer(root / "tokenizer")), split="0,0,1", max_prompt_len=16,
                           unsup=[str(write_documents(root / "docs.jsonl", 30, seed=2))], unsup_block=16, progress=False))
    from trainer.shard_dataset import ShardDataset

    assert len(ShardDataset(shards, "unsup")) % 16 != 0
    rows = train("trainer.phase3_ppo", shards, tmp_path / "run", "--actor_model_name_or_path", str(toy["actor"]),
                 "--critic_model_name_or_path", str(toy["reward"]), "--unsup_shards", str(shards), "--max_steps", "4",
                 "--per_device_generation_batch_size", "16", "--per_device_training_batch_size", "4", "--max_answer_seq_len", "4",
                 "--num_warmup_steps", "0", model_flags=False)
    assert len(rows) == 4 and all(math.isfinite(r["ptx_loss"]) for r in rows)


def test_ratio_log_probs_come_from_the_distribution_that_sampled(toy):
    """At temperature 3 the sampled tokens' frequencies match exp(the log-probs PPO uses), not the
    untempered policy's probabilities."""
    from transformers import AutoModelForCausalLM

    from trainer.phase3_ppo import action_logprobs

    actor = AutoModelForCausalLM.from_pretrained(toy["actor"]).eval()
    prompt = torch.tensor([[3, 8, 9, 4]]).repeat(3000, 1)
    with torch.no_grad():  # a peaked policy (top token near 0.8), so that the temperature matters: scale the final norm
        logits = actor(prompt[:1]).logits[0, -1]
        scale = next(f for f in (1, 2, 4, 8, 16, 32, 64, 128) if torch.softmax(f * logits, -1).max() > 0.8)
        actor.transformer.ln_f.weight.mul_(scale)
        actor.transformer.ln_f.bias.mul_(scale)
    torch.manual_seed(0)
    with torch.no_grad():
        seq = actor.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, do_sample=True, temperature=3.0,
                             top_k=0, top_p=1.0, pad_token_id=1, eos_token_id=0)
        mask = torch.ones_like(seq)
        positions = torch.arange(seq.shape[1]).unsqueeze(0).expand_as(seq)
        tempered = action_logprobs(actor, seq[:1], mask[:1], positions[:1], 3, temperature=3.0)[0, 0].exp().item()
        policy = action_logprobs(actor, seq[:1], mask[:1], positions[:1], 3, temperature=1.0)[0, 0].exp().item()
    frequency = (seq[:, -1] == seq[0, -1]).float().mean().item()
    sigma = math.sqrt(tempered * (1 - tempered) / len(seq))
    assert abs(frequency - tempered) < 4 * sigma, (frequency, tempered)
    assert abs(frequency - policy) > 10 * sigma, (frequency, policy)


def test_top_p_below_one_is_refused(toy, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "trainer.phase3_ppo", "--shards", str(toy["shards"]), "--output_dir", str(tmp_path),
                           "--actor_model_name_or_path", "a", "--critic_model_name_or_path", "c", "--top_p", "0.9"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--top_p 0.9" in proc.stderr and "Traceback" not in proc.stderr


def test_accumulation_never_spans_two_rounds(toy, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "trainer.phase3_ppo", "--shards", str(toy["shards"]), "--output_dir", str(tmp_path),
                           "--actor_model_name_or_path", str(toy["actor"]), "--critic_model_name_or_path", str(toy["reward"]),
                           "--per_device_generation_batch_size", "8", "--per_device_training_batch_size", "8",
                           "--gradient_accumulation_steps", "2"], capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 1 and "would mix two rounds' experience" in proc.stderr and "Traceback" not in proc.stderr


def test_experience_is_reshuffled_between_ppo_epochs():
    from trainer.phase3_ppo import epoch_order

    generator = torch.Generator().manual_seed(0)
    orders = [epoch_order(8, epoch, generator) for epoch in range(4)]
    assert orders[0] == list(range(8))  # collected order first
    assert all(sorted(o) == list(range(8)) for o in orders)  # every micro-batch once per epoch
    assert len({tuple(o) for o in orders[1:]}) > 1 and any(o != list(range(8)) for o in orders[1:])


# -- the experience and the updates, in-process: plain modules standing in for DeepSpeed's engines --------------

class Engine(torch.nn.Module):
    """What make_experience and train_on use of a DeepSpeed engine, around a plain module: `module`, the
    forward, `backward`, and DeepSpeed's gradient accumulation: `step()` updates the weights (SGD) on every
    `accumulation`-th micro-step, which `is_gradient_accumulation_boundary()` tells before that step."""

    def __init__(self, module: torch.nn.Module, accumulation: int = 1):
        super().__init__()
        self.module, self.accumulation, self.micro_steps, self.updates = module, accumulation, 0, 0
        self.optimizer = torch.optim.SGD(module.parameters(), lr=0.1)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def is_gradient_accumulation_boundary(self) -> bool:
        return (self.micro_steps + 1) % self.accumulation == 0

    def step(self) -> None:
        if self.is_gradient_accumulation_boundary():
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.updates += 1
        self.micro_steps += 1


def toy_flags(toy: dict, tmp_path: Path, **values):
    from trainer.phase3_ppo import PPOFlags

    return PPOFlags(shards=toy["shards"], output_dir=tmp_path, actor_model_name_or_path=str(toy["actor"]),
                    critic_model_name_or_path=str(toy["reward"]), **values)


def toy_prompts(toy: dict, rows: int = 16) -> dict:
    """The first `rows` phase-3 prompts, left-padded as the trainer batches them."""
    from trainer.collate import PromptCollator
    from trainer.shard_dataset import ShardDataset

    prompts = ShardDataset(toy["shards"], 3, "train")
    return PromptCollator(prompts.tokenizer.pad_or_eos)([prompts[i] for i in range(rows)])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_experience_log_probs_are_those_of_the_distribution_that_sampled(toy, tmp_path, monkeypatch, temperature):
    """The actor's generation_config.json sets a repetition penalty and bans repeated bigrams, as chat
    checkpoints ship them: the log-probs generate sampled each token with (log_softmax of its processed
    scores) must still be the experience's, which PPO's ratio and KL use."""
    from transformers import AutoModelForCausalLM

    from dataprep.format import Manifest
    from trainer import ppo as maths
    from trainer.phase3_ppo import make_experience

    checkpoint = with_generation_config(toy["actor"], tmp_path / "actor", repetition_penalty=1.2, no_repeat_ngram_size=2)
    actor = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert actor.generation_config.repetition_penalty == 1.2  # generate would apply it by default
    critic = RewardModel.from_pretrained(toy["reward"])
    tokenizer = Manifest.read(toy["shards"]).tokenizer
    flags = toy_flags(toy, tmp_path, max_answer_seq_len=8, temperature=temperature)

    scores = []
    generate = actor.generate

    def generate_with_scores(*args, **kwargs):  # the trainer's own call, also keeping what each token was drawn from
        out = generate(*args, output_scores=True, return_dict_in_generate=True, **kwargs)
        scores.append(torch.stack(out.scores, dim=1))
        return out.sequences

    monkeypatch.setattr(actor, "generate", generate_with_scores)
    batch = toy_prompts(toy)
    torch.manual_seed(0)
    exp, _, _ = make_experience(batch, Engine(actor), actor, critic, critic, flags, tokenizer)
    answer = exp.seq[:, batch["prompt"].shape[1]:]
    sampled = torch.log_softmax(scores[0].float(), dim=-1).gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    real = maths.answer_mask(answer, tokenizer.eos_id).bool()  # after EOS generate pads: no token was drawn there
    assert real.sum() > 32
    assert torch.allclose(sampled[real], exp.logprobs[real], atol=1e-5), (sampled[real] - exp.logprobs[real]).abs().max()


def test_the_checkpoints_generation_config_is_ignored_and_named_once(toy, tmp_path):
    from transformers import GenerationConfig

    from dataprep.format import Manifest
    from trainer.phase3_ppo import generation_config, ignored_generation_fields

    tokenizer = Manifest.read(toy["shards"]).tokenizer
    ours = generation_config(tokenizer, toy_flags(toy, tmp_path))
    assert ignored_generation_fields(GenerationConfig.from_pretrained(toy["actor"]), ours) == {}  # ids and cache flags only
    checkpoint = with_generation_config(toy["actor"], tmp_path / "actor", repetition_penalty=1.2, no_repeat_ngram_size=2)
    ppo(toy, tmp_path / "run", steps=1, actor=checkpoint)
    lines = [line for line in (tmp_path / "run" / "stdout.txt").read_text().splitlines() if "generation_config.json" in line]
    assert lines == [f"trainer: phase 3 samples from the policy itself; ignoring {checkpoint}'s generation_config.json: "
                     "repetition_penalty=1.2, no_repeat_ngram_size=2"], lines


@pytest.mark.parametrize("role", ["actor", "critic"])
def test_a_checkpoint_with_another_tokenizer_is_refused_before_its_weights_load(toy, tmp_path, role):
    """The checkpoint's tokenizer differs from the shards' (one word renamed) and its weights are
    unreadable: the refusal must come from the tokenizer check, before anything reads weights."""
    checkpoint = tmp_path / role
    shutil.copytree(toy["actor" if role == "actor" else "reward"], checkpoint)
    tokenizer_json = checkpoint / "tokenizer.json"
    tokenizer_json.write_text(tokenizer_json.read_text().replace('"w10"', '"w99"'))
    (checkpoint / "model.safetensors").write_bytes(b"not weights")
    models = {"actor": toy["actor"], "critic": toy["reward"], role: checkpoint}
    proc = subprocess.run([sys.executable, "-m", "trainer.phase3_ppo", "--shards", str(toy["shards"]), "--output_dir", str(tmp_path / "run"),
                           "--actor_model_name_or_path", str(models["actor"]), "--critic_model_name_or_path", str(models["critic"])],
                          capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("trainer: ") and f"{checkpoint} has another tokenizer" in proc.stderr


def test_a_deepspeed_chat_reward_model_gives_the_same_run_as_ours(toy, tmp_path):
    """The same weights as our phase-2 format and as DeepSpeed-Chat's step-2 state dict: sampled runs
    with the same seed must see the same answers, hence the same rewards, step by step."""
    theirs = write_deepspeed_chat(toy["reward"], tmp_path / "deepspeed-chat")
    ours_rows = ppo(toy, tmp_path / "ours", steps=2)
    theirs_rows = ppo(toy, tmp_path / "theirs", steps=2, critic=theirs)
    assert [(r["reward"], r["answer_len"]) for r in theirs_rows] == [(r["reward"], r["answer_len"]) for r in ours_rows]


@pytest.mark.parametrize("ptx", [False, True])
def test_the_ema_follows_the_actors_optimizer_updates_not_its_micro_batches(toy, tmp_path, ptx):
    """Gradient accumulation 2 over a round of 4 micro-batches: 2 actor updates (with PTX, each of 4
    micro-steps: PPO and LM loss per micro-batch), so 2 EMA updates, each after its optimizer update."""
    from transformers import AutoModelForCausalLM

    from dataprep.format import Manifest
    from trainer.collate import BlockCollator
    from trainer.ema import EMA
    from trainer.phase3_ppo import make_experience, micro_batches, train_on
    from trainer.shard_dataset import ShardDataset

    class CountingEMA(EMA):
        def update(self, actor_module):
            seen.append(actor.updates)
            super().update(actor_module)

    seen: list[int] = []
    actor = Engine(AutoModelForCausalLM.from_pretrained(toy["actor"]), accumulation=2 * (2 if ptx else 1))
    critic = Engine(RewardModel.from_pretrained(toy["reward"]), accumulation=2)
    flags = toy_flags(toy, tmp_path, max_answer_seq_len=4, gradient_accumulation_steps=2)
    torch.manual_seed(0)
    exp, _, _ = make_experience(toy_prompts(toy), actor, actor.module, critic, critic.module, flags, Manifest.read(toy["shards"]).tokenizer)
    blocks = ShardDataset(toy["shards"], "unsup")
    unsup = [BlockCollator()([blocks[i] for i in range(16)])] if ptx else None
    ema = CountingEMA(copy.deepcopy(actor.module))
    for part in micro_batches([exp], unsup, 4):
        train_on(*part, actor, critic, flags, ema)
    assert actor.updates == 2 and seen == [1, 2], seen
