"""Trainer tests run the phase scripts as separate processes (DeepSpeed's process group is one per
process), on shards that `dataprep prepare` writes from the shipped sample, with a tiny GPT-2 built
from a config: no downloads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

TINY = Path(__file__).resolve().parents[2] / "packages" / "trainer" / "src" / "trainer" / "configs" / "tiny-gpt2.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(phase: str, shards: Path, out: Path, *flags: str, procs: int = 1, model_flags: bool = True,
          env: dict[str, str] | None = None) -> list[dict]:
    """Run trainer.<phase> on CPU; returns its metrics.jsonl rows (its stdout goes to OUT/stdout.txt).
    `model_flags`: build the model from the tiny config (phase 3 loads checkpoints instead); `env`: more
    environment variables (the trainers' test hooks)."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}, **(env or {})}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    launch = [sys.executable, "-m", phase] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(free_port()), "-m", phase]
    model = ["--model_config", str(TINY)] if model_flags else []
    cmd = [*launch, "--shards", str(shards), *model, "--output_dir", str(out), "--dtype", "fp32", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stdout.txt").write_text(proc.stdout)  # what the run printed, for tests that check it
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def sample_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample-shards")
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="6,2,2", progress=False))
    return out


@pytest.fixture(scope="session")
def fixed_length_shards(tmp_path_factory) -> Path:
    """Every phase-1 and phase-2 row truncated to 32 tokens: equal token counts per rank, so a 2-rank
    mean of per-rank losses equals the 1-rank mean over the same global batch. The sample's repeated
    rows are kept (no dedup): truncation alone leaves phase 2 few enough pairs."""
    out = tmp_path_factory.mktemp("fixed")
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="4,4,2", max_seq_len=32, progress=False,
                           dedup=False))
    return out


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict:
    """Phase 3's toy world (toy.py): shards, an actor and a reward model with a known favourite word."""
    from tests.trainer.toy import build

    return build(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def tiny_checkpoint(fixed_length_shards, tmp_path_factory) -> Path:
    """A tiny GPT-2 saved with the sample's tokenizer: runs that must start from the same weights at every
    ZeRO stage load it (a model built from a config under ZeRO-3 is initialised partition by partition,
    so its random weights differ from a whole model's)."""
    import torch

    from dataprep.format import Manifest
    from trainer.checkpoint import save_tokenizer
    from trainer.models import causal_lm

    tokenizer = Manifest.read(fixed_length_shards).tokenizer
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-checkpoint")
    causal_lm(None, TINY, tokenizer).save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out

