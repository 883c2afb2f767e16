"""`make bench`, training section: what --packing saves phases 1 and 2, measured in one run on the same data.

    python bench/packing.py [--steps 8] [--rounds 3] [--batch 8] [--plan-scale 534382,167229]

Data: ../shared's two HH-RLHF test files (bench/run.py's input at its base size), prepared with the GPT-2
tokenizer at max_seq_len 512, --split 1,1,0 (phases 1 and 2 only).

1. Padding: the share of token slots that batches spend on padding, per phase and batch size,
   unpacked (rows in a seeded order, each batch padded to its longest) and packed (the trainer's plan,
   each batch of packs padded to its longest sequence): dataprep.stats, what `dataprep stats` prints.
2. Throughput: training steps of phases 1 and 2 on the CPU (one thread), a 16M-parameter GPT-2 built
   from configs/gpt2-16m.json, fp32, --batch rows (pairs) unpacked against --batch packs packed, on the same
   shards: real (non-pad) tokens per second, over every step but each run's first, of
   --rounds interleaved rounds (so load from other processes falls on both alike), each round with
   its own seed (so the unpacked batches are --rounds samples of the data, not one); then the same per
   second of the trainer's CPU time (`step_cpu_s`: what such load does not inflate), and the ratio
   the padding alone predicts (real tokens per slot, packed over unpacked).
3. Where to plan: the plan of one epoch computed at load time from the shards' lengths (what the
   trainer does) against read back from a side file written at prepare time, at the bench's size and
   with the lengths repeated to --plan-scale items (the 1M-row bench input's phase 1 rows and phase 2 pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "packages" / "dataprep" / "src"), str(ROOT / "packages" / "trainer" / "src")]

from run import FILES, WORK as BENCH_WORK, make_input  # noqa: E402  (bench/run.py: the shared input)

WORK = BENCH_WORK / "packing"
CONFIG = ROOT / "packages" / "trainer" / "src" / "trainer" / "configs" / "gpt2-16m.json"
GPT2 = ROOT.parent / "shared" / "data" / "tokenizers" / "gpt2" / "tokenizer.json"
BASE_ROWS = 3886  # the two test files' rows: make_input at this size repeats nothing
PHASES = {1: "trainer.phase1_sft", 2: "trainer.phase2_reward"}


def prepare_shards() -> Path:
    from dataprep import PrepareOptions, prepare

    out = WORK / "shards"
    prepare(PrepareOptions(data=[str(make_input(BASE_ROWS))], out=out, tokenizer=str(GPT2), split="1,1,0", max_seq_len=512,
                           max_prompt_len=256, progress=False))
    return out


def padding_table(found: dict, sizes: list[int]) -> list[list[str]]:
    return [[f"phase {phase}", str(b), f"{f.unpacked[b]:.1%}", f"{f.packed[b]:.1%}"] for phase, f in found.items() for b in sizes]


def train(phase: int, shards: Path, out: Path, batch: int, steps: int, packed: bool, seed: int) -> np.ndarray:
    """Real tokens, wall seconds and CPU seconds of each step after the first, [steps - 1, 3]."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    # One thread: on a shared machine two threads wait on each other at every op whenever either is
    # descheduled, which scatters step times far more than the packing changes them.
    env.update(DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(sys.path[:2]))
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", PHASES[phase], "--shards", str(shards), "--model_config", str(CONFIG), "--output_dir", str(out),
           "--dtype", "fp32", "--per_device_train_batch_size", str(batch), "--per_device_eval_batch_size", "1", "--eval_iters", "1",
           "--max_steps", str(steps), "--learning_rate", "1e-4", "--seed", str(seed), *(["--packing"] if packed else [])]
    print(f"bench-packing: phase {phase} {'packed' if packed else 'unpacked'}, {steps} steps", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"bench-packing: phase {phase} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return np.array([(r["tokens_per_s"] * r["step_time_s"], r["step_time_s"], r["step_cpu_s"]) for r in rows if "tokens_per_s" in r][1:])


def throughput_table(shards: Path, found: dict, batch: int, steps: int, rounds: int) -> list[list[str]]:
    """Real tokens per second of wall time and of CPU time (sums over the steps, not a mean of ratios:
    unpacked steps differ in size), and what the padding alone predicts: the ratio of real tokens per slot."""
    rows = []
    for phase in PHASES:
        totals = {}  # packed? -> real tokens, wall seconds, CPU seconds
        for r in range(rounds):
            for packed in (False, True):
                run = train(phase, shards, WORK / f"run-{phase}-{int(packed)}-{r}", batch, steps, packed, seed=1234 + r)
                totals[packed] = totals.get(packed, 0) + np.append(run.sum(axis=0), len(run))
        (tokens_u, wall_u, cpu_u, _), (tokens_p, wall_p, cpu_p, counted) = totals[False], totals[True]
        by_slots = (1 - found[phase].packed[batch]) / (1 - found[phase].unpacked[batch])
        wall, cpu = (tokens_u / wall_u, tokens_p / wall_p), (tokens_u / cpu_u, tokens_p / cpu_p)
        rows.append([f"phase {phase}", str(batch), f"{wall[0]:,.0f}", f"{wall[1]:,.0f}", f"{wall[1] / wall[0]:.2f}x", f"{cpu[0]:,.0f}",
                     f"{cpu[1]:,.0f}", f"{cpu[1] / cpu[0]:.2f}x", f"{by_slots:.2f}x", str(int(counted))])
    return rows


def plan_table(shards: Path, scale: dict[int, int]) -> list[list[str]]:
    """Seconds per epoch: lengths + plan at load time, against writing and reading a side file."""
    from dataprep.format import TOKEN_COLUMNS
    from dataprep.packing import plan
    from trainer.shard_dataset import ShardDataset

    rows = []
    for phase in PHASES:
        dataset = ShardDataset(shards, phase, verify=False)
        started = time.perf_counter()
        lengths = np.stack([dataset.lengths(c) for c in TOKEN_COLUMNS[phase]], axis=1)
        read_lengths = time.perf_counter() - started
        for items in (len(lengths), scale[phase]):
            tiled = np.resize(lengths, (items, lengths.shape[1]))  # the lengths repeated up to `items`
            started = time.perf_counter()
            packs = plan(tiled, dataset.max_seq_len, seed=1234, epoch=0)
            planned = time.perf_counter() - started
            side = WORK / f"plan-{phase}-{items}.npz"
            started = time.perf_counter()
            np.savez(side, items=packs.items, bounds=packs.bounds, seqs=packs.seqs)
            written = time.perf_counter() - started
            started = time.perf_counter()
            with np.load(side) as loaded:
                _ = (loaded["items"], loaded["bounds"], loaded["seqs"])
            read = time.perf_counter() - started
            rows.append([f"phase {phase}", f"{items:,}", f"{(read_lengths + planned) * 1000:,.1f}", f"{read * 1000:,.1f}",
                         f"{written * 1000:,.1f}", f"{side.stat().st_size / 1e6:,.1f}"])
    return rows


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per training run (the first is not counted)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved unpacked/packed runs per phase")
    parser.add_argument("--batch", type=int, default=8, help="rows or pairs (unpacked) and packs (packed) per micro-batch")
    parser.add_argument("--plan-scale", default="534382,167229", help="phase 1 rows, phase 2 pairs to time the plan at")
    args = parser.parse_args()
    missing = [f for f in [*FILES, GPT2] if not f.exists()]
    if missing:
        print(f"bench-packing: skipped: needs ../shared/data (missing {missing[0]})", file=sys.stderr)
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    from dataprep.stats import padding

    shards = prepare_shards()
    scale = dict(zip(PHASES, map(int, args.plan_scale.split(","))))
    sizes = sorted({4, 8, 16, args.batch})
    found = {phase: padding(shards, phase, "train", sizes) for phase in PHASES}
    print("Padding share of token slots (HH-RLHF test files, GPT-2 tokenizer, max_seq_len 512; batch: rows or pairs unpacked, packs packed)")
    print(table(padding_table(found, sizes), ["phase", "batch", "unpacked", "packed"]))
    print(f"\nWhere to plan, one epoch (ms): at load time from the shards' lengths, or a side file written at prepare time")
    print(table(plan_table(shards, scale), ["phase", "items", "load: lengths + plan", "side file: read", "side file: write", "side file MB"]))
    print(f"\nTraining throughput on the CPU (1 thread), {CONFIG.name} (16M parameters), fp32: real (non-pad) tokens per second of wall "
          f"time, then of CPU time, over {args.rounds} x {args.steps - 1} steps")
    speeds = throughput_table(shards, found, args.batch, args.steps, args.rounds)
    print(table(speeds, ["phase", "batch", "unpacked", "packed", "ratio", "unpacked /CPU s", "packed /CPU s", "ratio", "by slots alone",
                         "steps"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
