"""The loss of an optimizer step is a mean over its units (phase 1: target tokens; phase 2 and DPO:
pairs) counted over all its micro-batches and ranks (loop.py). So the same rows give the same
gradient whether they come in one micro-batch, in four accumulated ones of different sizes, on two
ranks, or packed: checked on the full gradient of the first step (TRAINER_GRADS_AT_STEP). The rows
differ in length, so a per-micro-batch mean would weigh them unequally and fail these tests."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainer.conftest import train

ROWS = 16  # the whole train side, one optimizer step
WORDS = "the a cat dog sat ran on under mat big small red blue house tree river stone quick slow happy".split()
RUNS = {"sft": ("trainer.phase1_sft", 1, ()), "reward": ("trainer.phase2_reward", 2, ()), "dpo": ("trainer.phase2_dpo", 2, ())}


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


@pytest.fixture(scope="module")
def varied_shards(tmp_path_factory) -> Path:
    """16 phase-1 rows and 16 phase-2 pairs of lengths from a few tokens to ~100, with --loss full and
    different answers, so micro-batches and packs hold very different unit counts."""
    from dataprep import PrepareOptions, prepare
    from tests.conftest import SAMPLE_TOKENIZER

    rng = random.Random(0)
    root = tmp_path_factory.mktemp("varied")
    (root / "data").mkdir()
    for name, count in (("train", 2 * ROWS), ("test", 4)):
        rows = [{"prompt": f"\n\nHuman: {sentence(rng, 2, 30)}\n\nAssistant:", "chosen": " " + sentence(rng, 1, 60),
                 "rejected": " " + sentence(rng, 1, 60)} for _ in range(count)]
        (root / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "shards"
    prepare(PrepareOptions(data=[str(root / "data")], out=out, tokenizer=str(SAMPLE_TOKENIZER),
                           split="1,1,0", max_seq_len=256, max_prompt_len=128, progress=False))
    return out


def packs_in_step(shards: Path, phase: int) -> int:
    """How many packs epoch 0's plan makes of the whole train side (packing.loader's plan)."""
    from dataprep.format import TOKEN_COLUMNS
    from dataprep.packing import plan
    from trainer.shard_dataset import ShardDataset

    rows = ShardDataset(shards, phase, "train")
    assert len(rows) == ROWS
    lengths = np.stack([rows.lengths(c) for c in TOKEN_COLUMNS[phase]], axis=1)
    return len(plan(lengths, rows.max_seq_len, seed=1234, epoch=0))


def first_step_gradient(module: str, shards: Path, out: Path, batch: int, accumulation: int, *flags: str, procs: int = 1) -> dict:
    rows = train(module, shards, out, "--per_device_train_batch_size", str(batch), "--gradient_accumulation_steps", str(accumulation),
                 "--max_steps", "1", "--learning_rate", "1e-3", "--dropout", "0.0", "--eval_iters", "1", *flags, procs=procs,
                 env={"TRAINER_GRADS_AT_STEP": "1"})
    step = next(r for r in rows if "loss" in r)
    return {"grads": torch.load(out / "grads-1.pt"), "loss": step["loss"], "units": step["units"]}


@pytest.fixture(scope="module")
def whole_batch(varied_shards, tmp_path_factory) -> dict:
    """Per phase: the first gradient with every train row in one micro-batch on one rank."""
    root = tmp_path_factory.mktemp("whole")
    return {name: first_step_gradient(module, varied_shards, root / name, ROWS, 1) for name, (module, _, _) in RUNS.items()}


def assert_same_gradient(mine: dict, theirs: dict) -> None:
    assert mine["units"] == theirs["units"]
    assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    assert mine["grads"].keys() == theirs["grads"].keys()
    for name, grad in theirs["grads"].items():
        assert grad.abs().max() > 0 or name.endswith("bias")
        torch.testing.assert_close(mine["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("run", list(RUNS))
def test_four_accumulated_micro_batches_give_the_whole_batch_gradient(run, varied_shards, whole_batch, tmp_path):
    module, _, _ = RUNS[run]
    assert_same_gradient(first_step_gradient(module, varied_shards, tmp_path / run, ROWS // 4, 4), whole_batch[run])


@pytest.mark.parametrize("run", list(RUNS))
def test_two_ranks_give_the_one_rank_gradient(run, varied_shards, whole_batch, tmp_path):
    module, _, _ = RUNS[run]
    assert_same_gradient(first_step_gradient(module, varied_shards, tmp_path / run, ROWS // 2, 1, procs=2), whole_batch[run])


@pytest.mark.parametrize("run", list(RUNS))
def test_packs_accumulated_one_by_one_give_the_unpacked_gradient(run, varied_shards, whole_batch, tmp_path):
    module, phase, _ = RUNS[run]
    packs = packs_in_step(varied_shards, phase)
    assert 2 < packs < ROWS  # several packs of different row counts
    packed = first_step_gradient(module, varied_shards, tmp_path / run, 1, packs, "--packing")
    assert_same_gradient(packed, whole_batch[run])


def test_packed_epochs_are_each_counted_from_their_own_plan(tmp_path):
    """Over 1,024 rows (one best-fit window) an epoch's plan can hold a pack more or fewer than epoch 0's:
    the run's step count adds up every epoch's, so it neither stops early nor spills over."""
    from dataprep import PrepareOptions, prepare
    from dataprep.packing import plan
    from tests.conftest import SAMPLE_TOKENIZER
    from trainer import packing
    from trainer.loop import planned_steps
    from trainer.shard_dataset import ShardDataset

    rng = random.Random(1)
    (tmp_path / "data").mkdir()
    rows = [{"prompt": sentence(rng, 1, 8), "chosen": " " + sentence(rng, 1, 40), "rejected": None} for _ in range(1200)]
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare(PrepareOptions(data=[str(tmp_path / "data")], out=tmp_path / "shards", tokenizer=str(SAMPLE_TOKENIZER), split="1,0,0",
                           max_seq_len=64, max_prompt_len=32, progress=False))
    shards = ShardDataset(tmp_path / "shards", 1, "train")
    assert len(shards) > 1024
    per_epoch = [len(plan(shards.lengths("input_ids"), 64, 1234, epoch)) for epoch in range(4)]
    assert len(set(per_epoch)) > 1
    loader = packing.loader(shards, packing.PackedSFTCollator(0), batch_size=1, rank=0, world=1, seed=1234)
    assert planned_steps(loader, 4, accumulation=1) == sum(per_epoch) != 4 * per_epoch[0]
    assert planned_steps(loader, 4, accumulation=3) == sum(per_epoch) // 3


def test_a_policy_with_another_tokenizer_is_refused_before_its_weights_load(sample_shards, tiny_checkpoint, tmp_path):
    """DPO from a checkpoint whose tokenizer differs from the shards' (two token ids swapped) and whose weights
    are unreadable: refused by the tokenizer check, in one line, before the reference pass or any weights."""
    import shutil
    import subprocess
    import sys

    checkpoint = tmp_path / "policy"
    shutil.copytree(tiny_checkpoint, checkpoint)
    spec = json.loads((checkpoint / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = [token for token in vocab if token.isalpha()][:2]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two ids swapped: every merge still holds
    (checkpoint / "tokenizer.json").write_text(json.dumps(spec))
    (checkpoint / "model.safetensors").write_bytes(b"not weights")
    proc = subprocess.run([sys.executable, "-m", "trainer.phase2_dpo", "--shards", str(sample_shards), "--output_dir", str(tmp_path / "run"),
                           "--model_name_or_path", str(checkpoint), "--dtype", "fp32"],
                          capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"}, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"{checkpoint} has another tokenizer" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "reference").exists()
