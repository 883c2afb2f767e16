"""`make bench-trainer`: what ZeRO-3 buys the trainers, on 2 gloo ranks on the CPU, measured in one run.

    python bench/zero3.py [--steps 3] [--answer 32]

1. Memory. Phase 1 on GPT-2 124M built from configs/gpt2-124m.json with the GPT-2 tokenizer of
   ../shared/data, bf16, batch 4 of at most 128 tokens, 2 ranks, at ZeRO-0 and at ZeRO-3, with and
   without gradient checkpointing: the peak resident memory of the largest rank (`host_peak_mb` in
   metrics.jsonl) and the ratio. glibc keeps freed heap memory, so the runs serve large allocations
   with mmap (MALLOC_MMAP_THRESHOLD_=65536), which returns them on free: resident memory then follows
   what is live, as GPU memory would.
2. Generation. Phase 3 at ZeRO-3 on 2 ranks, that model as actor and critic, --answer new tokens per
   answer: seconds of `generate` per prompt batch with the actor gathered once per batch (the default)
   against gathered layer by layer for every token (--generate_partitioned).
Prints one table; the runs' outputs go to bench/work/trainer/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "trainer"
CONFIG = ROOT / "packages" / "trainer" / "src" / "trainer" / "configs" / "gpt2-124m.json"
GPT2 = ROOT.parent / "shared" / "data" / "tokenizers" / "gpt2" / "tokenizer.json"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(module: str, out: Path, *flags: str, procs: int = 2) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(_port()),
           "-m", module, "--output_dir", str(out), "--dtype", "bf16", *flags]
    print(f"bench-trainer: {module} {' '.join(flags)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"bench-trainer: {module} failed:\n{proc.stderr[-3000:]}")
    print(f"bench-trainer:   {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (phase 1) and prompt batches (phase 3) per run")
    parser.add_argument("--answer", type=int, default=32, help="new tokens per answer in phase 3")
    args = parser.parse_args()
    if not GPT2.exists():
        print(f"bench-trainer: skipped: needs ../shared/data (missing {GPT2})", file=sys.stderr)
        return 0
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    sys.path.insert(0, str(ROOT))
    from dataprep import PrepareOptions, prepare

    shards = WORK / "shards"
    prepare(PrepareOptions(data=[str(ROOT / "data" / "sample-hh")], out=shards, tokenizer=str(GPT2), split="4,4,2", max_seq_len=128,
                           max_prompt_len=64, progress=False))
    small = ("--shards", str(shards), "--model_config", str(CONFIG), "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
             "--max_steps", str(args.steps), "--eval_iters", "1", "--learning_rate", "1e-4")
    peak = {}
    for checkpointing in ((), ("--gradient_checkpointing",)):
        for stage in (0, 3):
            rows = run("trainer.phase1_sft", WORK / f"sft-z{stage}{'-gc' if checkpointing else ''}", *small, "--zero_stage", str(stage), *checkpointing)
            peak[stage, bool(checkpointing)] = max(r["host_peak_mb"] for r in rows if "host_peak_mb" in r)
    run("trainer.phase2_reward", WORK / "rm", *small, "--zero_stage", "3")
    ppo = ("--shards", str(shards), "--actor_model_name_or_path", str(WORK / "sft-z3"), "--critic_model_name_or_path", str(WORK / "rm"),
           "--actor_zero_stage", "3", "--critic_zero_stage", "3", "--per_device_generation_batch_size", "4",
           "--per_device_training_batch_size", "4", "--max_answer_seq_len", str(args.answer), "--max_steps", str(args.steps),
           "--num_warmup_steps", "0")
    generate = {}
    for label, extra in (("gathered once per batch", ()), ("gathered per token", ("--generate_partitioned",))):
        rows = run("trainer.phase3_ppo", WORK / f"ppo-{len(generate)}", *ppo, *extra)
        generate[label] = (sum(r["generate_s"] for r in rows) / len(rows), sum(r["answer_len"] for r in rows) / len(rows))
    params = _parameters(WORK / "sft-z3")

    print(f"2 gloo ranks on the CPU, bf16; model: {CONFIG.name} with the GPT-2 tokenizer, {params / 1e6:.0f}M parameters")
    print(f"{'measure':<70} {'value':>10} {'ratio':>8}")
    for checkpointing in (False, True):
        note = ", gradient checkpointing" if checkpointing else ""
        print(f"{f'phase 1 peak RSS, largest rank, ZeRO-0{note} (MB)':<70} {peak[0, checkpointing]:>10,} {'1.00x':>8}")
        print(f"{f'phase 1 peak RSS, largest rank, ZeRO-3{note} (MB)':<70} {peak[3, checkpointing]:>10,} "
              f"{peak[3, checkpointing] / peak[0, checkpointing]:>7.2f}x")
    base = generate["gathered per token"][0]
    for label, (seconds, length) in generate.items():
        print(f"{f'phase 3 generate per batch at ZeRO-3, {label} (s)':<70} {seconds:>10.2f} {seconds / base:>7.2f}x  "
              f"(answers of {length:.1f} tokens)")
    return 0


def _parameters(checkpoint: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())


if __name__ == "__main__":
    raise SystemExit(main())
