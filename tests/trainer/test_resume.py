"""--save_steps / --resume_from: a run killed with SIGKILL after a checkpoint, then started again with
the same flags, ends with the uninterrupted run's weights and metrics (fp32 on CPU), with no step
missing or repeated, packed (--packing) or not; a checkpoint of another run is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import TINY, train


def run(module: str, shards: Path, out: Path, *flags: str, kill_at: int | None = None, model_flags: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if kill_at is not None:
        env["TRAINER_KILL_AT_STEP"] = str(kill_at)
    model = ["--model_config", str(TINY)] if model_flags else []
    cmd = [sys.executable, "-m", module, "--shards", str(shards), *model, "--output_dir", str(out), "--dtype", "fp32", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timing = {"time", "tokens_per_s", "samples_per_s", "step_time_s", "step_cpu_s", "data_wait_s", "data_wait_frac", "generation_s", "generate_s", "training_s",
              "host_peak_mb", "gpu_peak_mb"}
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 1e-6, worst


# Packed: 12 packs a batch, 5 batches an epoch of the sample, so the resumed run crosses into a new epoch's plan.
@pytest.mark.parametrize("batch", [("4",), ("12", "--packing")])
def test_phase1_killed_and_resumed_ends_like_the_uninterrupted_run(sample_shards, tmp_path, batch):
    flags = ("--per_device_train_batch_size", *batch, "--max_steps", "8", "--save_steps", "3", "--eval_interval", "4", "--eval_iters", "2",
             "--learning_rate", "1e-3", "--num_warmup_steps", "2", "--dropout", "0.1")  # dropout: the RNG must resume too
    train("trainer.phase1_sft", sample_shards, tmp_path / "whole", *flags)
    killed = run("trainer.phase1_sft", sample_shards, tmp_path / "cut", *flags, kill_at=5)
    assert killed.returncode == -9  # SIGKILL after step 5: the newest complete checkpoint is step 3's
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step-00000003"]
    resumed = run("trainer.phase1_sft", sample_shards, tmp_path / "cut", *flags)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(weights(tmp_path / "whole"), weights(tmp_path / "cut"))
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [r["step"] for r in whole] == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8]
    assert all(c == pytest.approx(w, rel=1e-6) for c, w in zip(cut, whole))


def test_a_checkpoint_of_another_run_is_refused(sample_shards, tmp_path):
    from dataprep import PrepareOptions, prepare
    from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

    flags = ("--per_device_train_batch_size", "4", "--max_steps", "4", "--save_steps", "2", "--eval_iters", "1", "--learning_rate", "1e-3")
    assert run("trainer.phase1_sft", sample_shards, tmp_path / "run", *flags, kill_at=3).returncode == -9
    other = tmp_path / "other-shards"
    prepare(PrepareOptions(data=[str(SAMPLE)], out=other, tokenizer=str(SAMPLE_TOKENIZER), split="5,3,2", progress=False))
    refused = run("trainer.phase1_sft", other, tmp_path / "run", *flags)
    assert refused.returncode == 1 and "belongs to another run" in refused.stderr and "shards" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_phase3_killed_and_resumed_ends_like_the_uninterrupted_run(toy, tmp_path):
    flags = ("--actor_model_name_or_path", str(toy["actor"]), "--critic_model_name_or_path", str(toy["reward"]),
             "--unsup_shards", str(toy["shards"]), "--enable_ema", "--max_steps", "8", "--save_steps", "2", "--generation_batches", "2",
             "--ppo_epochs", "2", "--per_device_generation_batch_size", "8", "--per_device_training_batch_size", "4",
             "--max_answer_seq_len", "4", "--num_warmup_steps", "0", "--actor_learning_rate", "1e-3", "--critic_learning_rate", "1e-3")
    train("trainer.phase3_ppo", toy["shards"], tmp_path / "whole", *flags, model_flags=False)
    killed = run("trainer.phase3_ppo", toy["shards"], tmp_path / "cut", *flags, kill_at=6, model_flags=False)
    assert killed.returncode == -9
    resumed = run("trainer.phase3_ppo", toy["shards"], tmp_path / "cut", *flags, model_flags=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("actor", "actor_ema"):
        assert_same(weights(tmp_path / "whole" / name), weights(tmp_path / "cut" / name))
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [r["step"] for r in whole] == [2, 4, 6, 8]
    assert all(c == pytest.approx(w, rel=1e-6) for c, w in zip(cut, whole))
