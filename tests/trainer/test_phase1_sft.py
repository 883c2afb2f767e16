"""Phase 1 on CPU: the loss falls, a ZeRO-3 checkpoint reloads with transformers and gives the trained
model's logits, a micro-batch without targets is no NaN, and --dropout reaches the model (2 ranks
against 1: test_distributed.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER
from tests.trainer.conftest import TINY, train


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
    assert {"tokens_per_s", "samples_per_s", "step_time_s", "step_cpu_s", "data_wait_s", "lr"} <= set(steps[0])
    assert (out / "loss.png").stat().st_size > 0
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|endoftext|>" and model.config.eos_token_id == tok.eos_token_id


def test_zero3_checkpoint_gives_the_same_logits(fixed_length_shards, tiny_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    common = ("--model_name_or_path", str(tiny_checkpoint), "--per_device_train_batch_size", "8", "--max_steps", "3",
              "--learning_rate", "1e-3", "--lr_scheduler_type", "constant")
    train("trainer.phase1_sft", fixed_length_shards, tmp_path / "z0", *common, "--zero_stage", "0", model_flags=False)
    train("trainer.phase1_sft", fixed_length_shards, tmp_path / "z3", *common, "--zero_stage", "3", model_flags=False)
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        z0 = AutoModelForCausalLM.from_pretrained(tmp_path / "z0")(ids).logits
        z3 = AutoModelForCausalLM.from_pretrained(tmp_path / "z3")(ids).logits
    assert torch.allclose(z0, z3, atol=1e-4), (z0 - z3).abs().max()


def test_a_micro_batch_with_no_target_token_gives_a_zero_loss_not_nan(sample_shards):
    """--sft_loss last on rows whose answers were truncated away: every label is -100."""
    from dataprep.format import Manifest
    from trainer.models import causal_lm
    from trainer.phase1_sft import eval_sums, step

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


def test_a_shard_whose_bytes_changed_is_refused_before_training(tmp_path):
    """One flipped byte in the middle of a phase-1 shard of the embedded default: the file still reads
    as Arrow, and `dataprep verify` reports it; the trainer must refuse it too, in one line."""
    out = tmp_path / "shards"
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="6,2,2", progress=False))
    shard = next((out / "phase1").glob("train-*.arrow"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "trainer.phase1_sft", "--shards", str(out), "--model_config", str(TINY),
                           "--output_dir", str(tmp_path / "sft"), "--max_steps", "1", "--dtype", "fp32"],
                          capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 1, proc.stderr[-1000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("trainer: ") and shard.name in last and "bytes changed" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "sft" / "metrics.jsonl").exists()


def test_a_bad_flag_or_model_path_is_one_line(sample_shards, tmp_path):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "trainer.phase1_sft", "--shards", str(sample_shards), "--output_dir", str(tmp_path)]
    for extra, code, needle in ((["--model_config", str(TINY), "--zero_stage", "7"], 2, "--zero_stage"),
                                (["--model_name_or_path", str(tmp_path / "no-such-model")], 1, "cannot load a model config")):
        proc = subprocess.run(base + extra, capture_output=True, text=True, env=env)
        lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("[")]  # DeepSpeed's own log lines
        assert proc.returncode == code and len(lines) == 1 and needle in lines[0], proc.stderr[-1000:]
