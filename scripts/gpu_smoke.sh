#!/usr/bin/env bash
# The trainers on an offline GPU box, in minutes, with what the box has plus a bundle that
# scripts/gpu_bundle.sh made on a machine with network (DeepSpeed and our packages as wheels, the shards):
#   1. phase 1 (OPT-1.3b from its config) and phase 2 (OPT-350m), STEPS steps each, ZeRO-2, fp16 and bf16;
#   2. a short phase 3 (PPO) from the bf16 checkpoints, ZeRO-2, with PTX and EMA;
#   3. DPO (OPT-350m, reference log-probs cached before training) and LoRA SFT (OPT-1.3b, LoRA 128 on decoder.layers.,
#      --only_optimize_lora) at ZeRO-3, STEPS steps each, bf16.
# The bundle installs with no index and no network into SITE, over the box's own torch and transformers;
# nothing is downloaded and no venv is built. A failing run prints its last 30 log lines and stops the
# script. At the end, one table (tokens/s over all GPUs, peak GPU memory, loss first and last, phase 3's
# time split) is printed and written as JSON to SUMMARY.
#   bash scripts/gpu_smoke.sh gpu-bundle                 on the box (STEPS=30 BATCH=8 PPO_STEPS=6 by default)
#   SMOKE_CPU=1 bash scripts/gpu_smoke.sh gpu-bundle     the rehearsal (make gpu-rehearsal): tiny models, fp32
#                                                        for fp16, a few steps, on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=$(realpath "${1:?usage: scripts/gpu_smoke.sh BUNDLE_DIR (made by scripts/gpu_bundle.sh)}")
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/rlhfkit-site}
RUNS=${RUNS:-checkpoints/gpu-smoke}
SUMMARY=${SUMMARY:-$RUNS/summary.json}
SHARDS=$BUNDLE/shards
rm -rf "$SITE" "$RUNS"
mkdir -p "$RUNS"

"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --find-links "$BUNDLE/wheels" --target "$SITE" \
  deepspeed hjson pydantic pydantic-core annotated-types typing-inspection rlhfkit-dataprep rlhfkit-trainer
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIGS=$("$PY" -c 'import pathlib, trainer; print(pathlib.Path(trainer.__file__).parent / "configs")')
"$PY" -c 'import torch, transformers, deepspeed, trainer; print(f"gpu smoke: torch {torch.__version__}, transformers {transformers.__version__}, "
  f"deepspeed {deepspeed.__version__}, trainer {trainer.__version__} from {trainer.__file__}")'

if [ -n "${SMOKE_CPU:-}" ]; then
  NPROC=1 STEPS=${STEPS:-4} BATCH=${BATCH:-4} PPO_STEPS=${PPO_STEPS:-2} ANSWER=16 HALF=fp32
  SFT_MODEL=$CONFIGS/tiny-gpt2.json RM_MODEL=$CONFIGS/tiny-gpt2.json LORA_LAYERS=transformer.h. LORA_DIM=8
  REFERENCE=off  # the cached reference scores every pair first: an hour of bf16 ZeRO-3 on a CPU
else
  NPROC=$(nvidia-smi -L | grep -c '^GPU') STEPS=${STEPS:-30} BATCH=${BATCH:-8} PPO_STEPS=${PPO_STEPS:-6} ANSWER=128 HALF=fp16
  SFT_MODEL=$CONFIGS/opt-1.3b.json RM_MODEL=$CONFIGS/opt-350m.json LORA_LAYERS=decoder.layers. LORA_DIM=128
  REFERENCE=on
fi

train() {  # train NAME MODULE ARGS...: one run; on failure its last 30 log lines, and the script stops
  local name=$1 module=$2; shift 2
  echo "gpu smoke: $name ..."
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m "trainer.$module" --shards "$SHARDS" \
    --output_dir "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1 || { echo "gpu smoke: $name failed:"; tail -30 "$RUNS/$name.log"; exit 1; }
}

for dtype in "$HALF" bf16; do
  common=(--per_device_train_batch_size "$BATCH" --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4
          --zero_stage 2 --dtype "$dtype" --gradient_checkpointing)
  train "sft-$dtype" phase1_sft --model_config "$SFT_MODEL" --learning_rate 9.65e-6 "${common[@]}"
  train "rm-$dtype" phase2_reward --model_config "$RM_MODEL" --learning_rate 5e-5 --dropout 0.0 "${common[@]}"
done
train ppo-bf16 phase3_ppo --unsup_shards "$SHARDS" --actor_model_name_or_path "$RUNS/sft-bf16" \
  --critic_model_name_or_path "$RUNS/rm-bf16" --per_device_generation_batch_size "$BATCH" \
  --per_device_training_batch_size "$BATCH" --max_answer_seq_len "$ANSWER" --max_steps "$PPO_STEPS" --dtype bf16 --actor_zero_stage 2 \
  --critic_zero_stage 2 --enable_ema --actor_dropout 0.0 --critic_dropout 0.0 --num_warmup_steps 0
train dpo-bf16-zero3 phase2_dpo --model_config "$RM_MODEL" --per_device_train_batch_size "$BATCH" \
  --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4 --learning_rate 5e-5 --weight_decay 0.1 --dtype bf16 --zero_stage 3 \
  --precompute_ref "$REFERENCE"
train lora-sft-bf16-zero3 phase1_sft --model_config "$SFT_MODEL" --per_device_train_batch_size "$BATCH" \
  --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4 --learning_rate 9.65e-6 --dtype bf16 --zero_stage 3 \
  --lora_dim "$LORA_DIM" --lora_module_name "$LORA_LAYERS" --only_optimize_lora

"$PY" - "$RUNS" "$SUMMARY" <<'PY'
"""One row per run from its metrics.jsonl: the table on screen, the rows as JSON."""
import json, sys
from pathlib import Path

runs, summary = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for log in sorted(runs.glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime):
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in lines if "loss" in r or "reward" in r]
    row = {"run": log.parent.name, "steps": len(steps), "gpu_peak_mb": max(r.get("gpu_peak_mb", 0) for r in steps),
           "host_peak_mb": max(r.get("host_peak_mb", 0) for r in steps)}
    if "reward" in steps[0]:  # phase 3: one row per round
        experience, sampling, training = (sum(r[k] for r in steps) for k in ("generation_s", "generate_s", "training_s"))
        row.update(first=steps[0]["reward"], last=steps[-1]["reward"], measure="reward", experience_share=experience / (experience + training),
                   sampling_share_of_experience=sampling / experience, kl_last=steps[-1]["kl"])
    else:
        steady = steps[len(steps) // 5:] or steps  # the warm-up steps left out
        row.update(first=steps[0]["loss"], last=steps[-1]["loss"], measure="loss",
                   tokens_per_s=sum(r["tokens_per_s"] for r in steady) / len(steady),
                   data_wait_share=sum(r["data_wait_frac"] for r in steady) / len(steady))
    rows.append(row)
summary.write_text(json.dumps(rows, indent=2) + "\n")
print(f"{'run':<22}{'steps':>6}{'tokens/s':>11}{'GPU MB':>9}{'host MB':>9}  first -> last")
for r in rows:
    tps = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else "-"
    split = (f"  (experience {100 * r['experience_share']:.0f}% of the time, sampling {100 * r['sampling_share_of_experience']:.0f}% of that)"
             if "experience_share" in r else "")
    print(f"{r['run']:<22}{r['steps']:>6}{tps:>11}{r['gpu_peak_mb']:>9,}{r['host_peak_mb']:>9,}  {r['measure']} {r['first']:.3f} -> {r['last']:.3f}{split}")
print(f"gpu smoke: summary in {summary}")
PY
