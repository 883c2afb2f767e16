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


# One DPO run, then each of these changes of its command in the same --output_dir: every one changes
# what is trained, so every one must be refused, by name, with both values.
CHANGED = [("--loss", "ipo"), ("--beta", "0.5"), ("--label_smoothing", "0.1"), ("--learning_rate", "1e-3"),
           ("--per_device_train_batch_size", "4"), ("--gradient_accumulation_steps", "2"), ("--seed", "7"),
           ("--lr_scheduler_type", "linear"), ("--num_warmup_steps", "1"), ("--max_steps", "5"), ("--num_train_epochs", "2"),
           ("--weight_decay", "0.1"), ("--dropout", "0.1"), ("--packing",), ("--lora_dim", "2")]
DPO = ("--per_device_train_batch_size", "8", "--max_steps", "2", "--eval_iters", "1", "--learning_rate", "5e-4", "--lora_module_name", "h.")


def refusals(module: str, shards: Path, out: Path, commands: list[tuple[str, ...]]) -> list[tuple[int, str]]:
    """(exit code, message) of `module` run with each command in OUT, all in one process (a refusal comes
    before any model is built, so one start-up serves the whole table)."""
    script = (
        "import json, sys\n"
        f"from {module} import main\n"
        "out = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        main(argv)\n"
        "        out.append([0, ''])\n"
        "    except SystemExit as exc:\n"
        "        out.append([1 if isinstance(exc.code, str) else exc.code, str(exc.code)])\n"
        "print(json.dumps(out))\n"
    )
    argvs = [["--shards", str(shards), "--model_config", str(TINY), "--output_dir", str(out), "--dtype", "fp32", *c] for c in commands]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(argvs)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def test_a_finished_run_is_not_continued_by_another_command(sample_shards, tiny_checkpoint, tmp_path):
    out = tmp_path / "dpo"
    train("trainer.phase2_dpo", sample_shards, out, *DPO)
    assert (out / "finished.json").is_file()
    before = (out / "metrics.jsonl").read_text()
    changed = [*CHANGED, ("--ref_model_name_or_path", str(tiny_checkpoint))]  # another reference: its fingerprint differs too
    results = refusals("trainer.phase2_dpo", sample_shards, out, [DPO, *((*DPO, *change) for change in changed)])
    assert results[0] == (0, "")  # the same command again: nothing to do, exit 0
    for change, (code, message) in zip(changed, results[1:]):
        assert code == 1 and "holds a finished run of another command" in message, (change, message)
        assert f"{change[0]}: " in message and "there" in message and "here" in message, (change, message)
        assert "\n" not in message
    assert "reference: 'config sha256" in results[-1][1]
    assert (out / "metrics.jsonl").read_text() == before  # nothing trained, nothing logged
    again = run("trainer.phase2_dpo", sample_shards, out, *DPO)
    assert again.returncode == 0 and "already holds this run, finished at step 2; nothing to do" in again.stdout


def test_a_checkpoint_is_not_resumed_by_another_command(sample_shards, tmp_path):
    """The issue's case: a DPO run dies; the next command in its directory is IPO at another beta, rate and
    batch size. It is refused, each flag named; a reward-model run there is refused too (no traceback)."""
    out = tmp_path / "dpo"
    flags = (*DPO[:3], "4", *DPO[4:], "--save_steps", "1")
    assert run("trainer.phase2_dpo", sample_shards, out, *flags, kill_at=2).returncode == -9
    ipo = (*flags, "--loss", "ipo", "--beta", "0.5", "--learning_rate", "1e-3", "--per_device_train_batch_size", "4")
    refused = run("trainer.phase2_dpo", sample_shards, out, *ipo)
    assert refused.returncode == 1 and "belongs to another run" in refused.stderr, refused.stderr[-2000:]
    for shown in ("--loss: 'sigmoid' there, 'ipo' here", "--beta: 0.1 there, 0.5 here", "--learning_rate: 0.0005 there, 0.001 here",
                  "--per_device_train_batch_size: 8 there, 4 here"):
        assert shown in refused.stderr
    reward = run("trainer.phase2_reward", sample_shards, out, *flags[:-4], "--learning_rate", "5e-4")
    assert reward.returncode == 1 and "script: 'phase2_dpo' there, 'phase2_reward' here" in reward.stderr, reward.stderr[-2000:]
    assert "Traceback" not in refused.stderr + reward.stderr
