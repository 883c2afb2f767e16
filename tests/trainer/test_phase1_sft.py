"""Phase 1 on CPU: the loss falls, 2 processes (gloo, ZeRO-2) match 1 process with the same global
batch, and a ZeRO-3 checkpoint reloads with transformers and gives the trained model's logits."""

from __future__ import annotations

import pytest
import torch

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER
from tests.trainer.conftest import train


def test_sft_loss_falls_and_checkpoint_loads(sample_shards, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sft"
    rows = train("trainer.phase1_sft", sample_shards, out, "--per_device_train_batch_size", "8", "--max_steps", "40",
                 "--learning_rate", "3e-3", "--num_warmup_steps", "2", "--eval_interval", "20")
    steps = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert len(steps) == 40 and len(evals) == 3  # before, at step 20, at the end
    assert steps[-1]["loss"] < steps[0]["loss"] - 1.5
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 1.0
    assert {"tokens_per_s", "samples_per_s", "step_time_s", "data_wait_s", "lr"} <= set(steps[0])
    assert (out / "loss.png").stat().st_size > 0
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|endoftext|>" and model.config.eos_token_id == tok.eos_token_id


@pytest.fixture(scope="module")
def fixed_length_shards(tmp_path_factory):
    """Every phase-1 row truncated to 32 tokens: equal token counts per rank, so a 2-process mean of
    per-rank losses equals the 1-process mean over the same global batch."""
    out = tmp_path_factory.mktemp("fixed")
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="6,2,2", max_seq_len=32, progress=False))
    return out


def test_two_processes_match_one(fixed_length_shards, tmp_path):
    common = ("--max_steps", "4", "--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--zero_stage", "2")
    one = train("trainer.phase1_sft", fixed_length_shards, tmp_path / "one", "--per_device_train_batch_size", "16", *common)
    two = train("trainer.phase1_sft", fixed_length_shards, tmp_path / "two", "--per_device_train_batch_size", "8", *common, procs=2)
    losses = lambda rows: [r["loss"] for r in rows if "loss" in r]
    assert len(losses(one)) == 4
    assert losses(two) == pytest.approx(losses(one), rel=1e-4, abs=1e-5)


def test_zero3_checkpoint_gives_the_same_logits(fixed_length_shards, tmp_path):
    from transformers import AutoModelForCausalLM

    common = ("--per_device_train_batch_size", "8", "--max_steps", "3", "--learning_rate", "1e-3", "--lr_scheduler_type", "constant")
    train("trainer.phase1_sft", fixed_length_shards, tmp_path / "z0", *common, "--zero_stage", "0")
    train("trainer.phase1_sft", fixed_length_shards, tmp_path / "z3", *common, "--zero_stage", "3")
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        z0 = AutoModelForCausalLM.from_pretrained(tmp_path / "z0")(ids).logits
        z3 = AutoModelForCausalLM.from_pretrained(tmp_path / "z3")(ids).logits
    assert torch.allclose(z0, z3, atol=1e-4), (z0 - z3).abs().max()


def test_a_micro_batch_with_no_target_token_gives_a_zero_loss_not_nan(sample_shards):
    """--mask_prompt on rows whose answers were truncated away: every label is -100."""
    from dataprep.format import Manifest
    from trainer.models import causal_lm
    from trainer.phase1_sft import eval_sums, step
    from tests.trainer.conftest import TINY

    model = causal_lm(None, TINY, Manifest.read(sample_shards).tokenizer)
    ids = torch.randint(5, 500, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.full_like(ids, -100)}
    out = step(model, batch)
    assert out.loss.item() == 0.0
    out.loss.backward()  # still a graph: every rank runs backward and step as usual
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        assert eval_sums(model, batch).tolist() == [0.0, 0.0]


def test_dropout_flag_sets_every_dropout_of_the_model(sample_shards, tmp_path):
    import json

    train("trainer.phase1_sft", sample_shards, tmp_path / "sft", "--per_device_train_batch_size", "4", "--max_steps", "1",
          "--eval_iters", "1", "--learning_rate", "1e-3", "--dropout", "0.3")
    config = json.loads((tmp_path / "sft" / "config.json").read_text())
    assert (config["resid_pdrop"], config["embd_pdrop"], config["attn_pdrop"]) == (0.3, 0.3, 0.3)
