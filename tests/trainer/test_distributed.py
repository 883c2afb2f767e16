"""Two gloo ranks on CPU: at ZeRO-2 and ZeRO-3 every phase (DPO and LoRA included) gives the losses
of one rank on the same global batch, phase 3 at ZeRO-3 (partitioned construction, EMA, generation,
one-at-a-time saves, LoRA merged) writes checkpoints that transformers loads, and bf16 trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import TINY, train


def losses(rows: list[dict], key: str = "loss") -> list[float]:
    return [r[key] for r in rows if key in r]


def common(checkpoint: Path) -> tuple[str, ...]:
    return ("--model_name_or_path", str(checkpoint), "--max_steps", "4", "--learning_rate", "1e-3", "--lr_scheduler_type", "constant",
            "--eval_iters", "1")


# What each run adds to `common`: the phases, DPO, and SFT with LoRA on every block.
RUNS = {"phase1_sft": ("trainer.phase1_sft",), "phase2_reward": ("trainer.phase2_reward",), "phase2_dpo": ("trainer.phase2_dpo",),
        "lora": ("trainer.phase1_sft", "--lora_dim", "4", "--lora_module_name", "transformer.h.")}


@pytest.fixture(scope="module")
def one_rank(fixed_length_shards, tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The 1-rank reference runs (ZeRO-0), global batch 16, from the same weights: their output directories."""
    root = tmp_path_factory.mktemp("one-rank")
    for run, (module, *extra) in RUNS.items():
        train(module, fixed_length_shards, root / run, *common(tiny_checkpoint), *extra, "--per_device_train_batch_size", "16", model_flags=False)
    return {run: root / run for run in RUNS}


def metrics(out: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("run", list(RUNS))
def test_two_ranks_match_one(run, stage, fixed_length_shards, tiny_checkpoint, one_rank, tmp_path):
    module, *extra = RUNS[run]
    two = train(module, fixed_length_shards, tmp_path / "two", *common(tiny_checkpoint), *extra, "--per_device_train_batch_size", "8",
                "--zero_stage", str(stage), procs=2, model_flags=False)
    assert len(losses(two)) == 4
    assert losses(two) == pytest.approx(losses(metrics(one_rank[run])), rel=1e-4, abs=1e-5)
    if run == "lora":  # merged on every rank's slices at ZeRO-3: the same plain checkpoint as one whole model gives
        from safetensors.torch import load_file

        mine, theirs = load_file(tmp_path / "two" / "model.safetensors"), load_file(one_rank[run] / "model.safetensors")
        assert mine.keys() == theirs.keys() and not any("lora" in k for k in mine)
        assert max((mine[k] - theirs[k]).abs().max().item() for k in mine) < 1e-4


@pytest.fixture(scope="module")
def greedy_actor(toy, tmp_path_factory) -> Path:
    """A tiny actor whose greedy answers vary with the prompt and hold no EOS in their first 4 tokens
    (weights scaled up from a random init; checked below): the toy actor's greedy answers are all the
    same word, which makes every advantage 0."""
    from dataprep.format import Manifest
    from trainer.checkpoint import save_tokenizer
    from trainer.models import causal_lm

    tokenizer = Manifest.read(toy["shards"]).tokenizer
    torch.manual_seed(5)
    actor = causal_lm(None, TINY, tokenizer)
    with torch.no_grad():
        for param in actor.parameters():
            param.mul_(6.0)
    out = tmp_path_factory.mktemp("greedy-actor")
    actor.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def ppo_flags(toy: dict, actor: Path, generation: int, *extra: str) -> tuple[str, ...]:
    """Greedy answers (--temperature 0) of the full 4 tokens: experience that does not depend on how
    the prompts are split between ranks, and equal token counts per rank."""
    return ("--actor_model_name_or_path", str(actor), "--critic_model_name_or_path", str(toy["reward"]), "--max_steps", "3",
            "--per_device_generation_batch_size", str(generation), "--per_device_training_batch_size", str(generation),
            "--max_answer_seq_len", "4", "--temperature", "0", "--num_warmup_steps", "0", "--lr_scheduler_type", "constant",
            "--actor_learning_rate", "1e-3", "--critic_learning_rate", "1e-3", *extra)


@pytest.mark.parametrize("stage", [2, 3])
def test_phase3_two_ranks_match_one(stage, toy, greedy_actor, tmp_path):
    one = train("trainer.phase3_ppo", toy["shards"], tmp_path / "one", *ppo_flags(toy, greedy_actor, 8), model_flags=False)
    two = train("trainer.phase3_ppo", toy["shards"], tmp_path / "two", *ppo_flags(toy, greedy_actor, 4, "--actor_zero_stage", str(stage),
                "--critic_zero_stage", str(stage)), procs=2, model_flags=False)
    assert [r["answer_len"] for r in one] == [4.0] * 3  # no early EOS: every rank trains on as many tokens
    assert len(set(losses(one, "reward"))) == 3 and all(abs(x) > 1e-3 for x in losses(one, "actor_loss") + losses(one, "critic_loss"))
    for key in ("reward", "kl", "actor_loss", "critic_loss"):
        assert losses(two, key) == pytest.approx(losses(one, key), rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("lora", [False, True])
def test_phase3_at_zero3_writes_checkpoints_transformers_loads(toy, tmp_path, lora):
    from transformers import AutoModelForCausalLM

    from trainer.reward import RewardModel

    out = tmp_path / "z3"
    # LoRA on both models: the EMA's LoRA weights are partitioned after the EMA is built (lora.partitioned_like).
    with_lora = ("--actor_lora_dim", "4", "--actor_lora_module_name", "h.", "--critic_lora_dim", "4", "--critic_lora_module_name", "h.") if lora else ()
    # --generate_partitioned: generation with the ranks in lockstep (the default gathers the actor, as the test above runs)
    rows = train("trainer.phase3_ppo", toy["shards"], out, *ppo_flags(toy, toy["actor"], 4, "--actor_zero_stage", "3", "--critic_zero_stage", "3",
                 "--enable_ema", "--temperature", "1", "--unsup_shards", str(toy["shards"]), "--generate_partitioned", *with_lora),
                 procs=2, model_flags=False)
    assert len(rows) == 3 and all(math.isfinite(r["reward"]) and math.isfinite(r["ptx_loss"]) for r in rows)
    actor, ema = AutoModelForCausalLM.from_pretrained(out / "actor"), AutoModelForCausalLM.from_pretrained(out / "actor_ema")
    start = AutoModelForCausalLM.from_pretrained(toy["actor"])
    moved = lambda model: max((a - b).abs().max().item() for a, b in zip(model.parameters(), start.parameters()))  # noqa: E731
    assert 0 < moved(ema) < moved(actor)  # the EMA trails the actor (beta 0.992)
    RewardModel.from_pretrained(out / "critic")


@pytest.mark.parametrize("phase, stage, procs", [("phase1_sft", 2, 1), ("phase1_sft", 2, 2), ("phase2_reward", 3, 2)])
def test_bf16_trains_on_cpu(fixed_length_shards, tmp_path, phase, stage, procs):
    """DeepSpeed runs bf16 on the CPU; at ZeRO-3 the reward model's head must share the backbone's dtype."""
    rows = train(f"trainer.{phase}", fixed_length_shards, tmp_path / "bf16", "--per_device_train_batch_size", "8", "--max_steps", "6",
                 "--learning_rate", "3e-3", "--eval_iters", "1", "--zero_stage", str(stage), "--dtype", "bf16", procs=procs)
    steps = losses(rows)
    assert len(steps) == 6 and all(math.isfinite(x) for x in steps) and steps[-1] < steps[0]
