#!/usr/bin/env bash
# One prepared command for a GPU box, offline: models are built from configs at DeepSpeed-Chat's sizes
# (OPT-1.3b for SFT, OPT-350m for the reward model), data is HH-RLHF from ../shared/data (or the shipped
# sample) with the GPT-2 tokenizer (or the shipped one).
#   1. phase 1 (OPT-1.3b) and phase 2 (OPT-350m), STEPS steps each, ZeRO-2, once in fp16 and once in bf16;
#   2. a short phase 3 (PPO) from the bf16 checkpoints, ZeRO-2, with PTX and EMA;
#   3. DPO (OPT-350m, DeepSpeed-Chat's recipe, cached reference log-probs) and LoRA SFT (OPT-1.3b, LoRA
#      128 on decoder.layers., --only_optimize_lora) at ZeRO-3, STEPS steps each, bf16.
# Prints, per run: tokens/s over all GPUs, peak GPU memory, and for phase 3 how a round's time splits
# between making experience (of it, sampling) and training.
#   bash scripts/gpu_smoke.sh            STEPS=50 BATCH=8 PPO_STEPS=8 to change the lengths / per-GPU batch
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-50}
BATCH=${BATCH:-8}
PPO_STEPS=${PPO_STEPS:-8}
DATA=../shared/data/hh-rlhf
TOKENIZER=../shared/data/tokenizers/gpt2/tokenizer.json
[ -d "$DATA" ] || DATA=data/sample-hh
[ -f "$TOKENIZER" ] || TOKENIZER=data/tokenizer/tokenizer.json
OUT=out/gpu-smoke
RUNS=checkpoints/gpu-smoke
CONFIGS=packages/trainer/src/trainer/configs
mkdir -p "$RUNS"
make -s .venv/.trainer
# --unsup: the dialogues double as PTX text (their first string column) for the phase-3 run.
.venv/bin/dataprep prepare --data "$DATA" --tokenizer "$TOKENIZER" --split 4,4,2 --out "$OUT" --unsup "$DATA" --quiet > /dev/null
NGPUS=$(nvidia-smi -L | grep -c '^GPU')

report() {  # report NAME METRICS.JSONL
  .venv/bin/python - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[2])]
steps = [r for r in rows if "tokens_per_s" in r]
if steps:
    steady = steps[len(steps) // 5:] or steps  # leave out the warm-up steps
    tps = sum(r["tokens_per_s"] for r in steady) / len(steady)
    wait = sum(r["data_wait_frac"] for r in steady) / len(steady)
    print(f"{sys.argv[1]}: {len(steps)} steps, {tps:,.0f} tokens/s (all GPUs), peak GPU memory {max(r.get('gpu_peak_mb', 0) for r in steps):,} MB, "
          f"data wait {100 * wait:.2f}%, loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}")
else:
    gen, sample, train = (sum(r[k] for r in rows) for k in ("generation_s", "generate_s", "training_s"))
    print(f"{sys.argv[1]}: {len(rows)} rounds, peak GPU memory {max(r.get('gpu_peak_mb', 0) for r in rows):,} MB, "
          f"time {100 * gen / (gen + train):.0f}% experience (of it {100 * sample / gen:.0f}% sampling) / {100 * train / (gen + train):.0f}% training, "
          f"reward {rows[0]['reward']:.3f} -> {rows[-1]['reward']:.3f}, kl {rows[-1]['kl']:.3f}")
PY
}

train() {  # train NAME MODULE ARGS...
  local name=$1 module=$2; shift 2
  .venv/bin/deepspeed --num_gpus "$NGPUS" "packages/trainer/src/trainer/$module.py" --shards "$OUT" --output_dir "$RUNS/$name" "$@" \
    > "$RUNS/$name.log" 2>&1 || { tail -30 "$RUNS/$name.log"; exit 1; }
  report "$name" "$RUNS/$name/metrics.jsonl"
}

for dtype in fp16 bf16; do
  common=(--per_device_train_batch_size "$BATCH" --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4
          --zero_stage 2 --dtype "$dtype" --gradient_checkpointing)
  train "sft-opt-1.3b-$dtype" phase1_sft --model_config "$CONFIGS/opt-1.3b.json" --learning_rate 9.65e-6 "${common[@]}"
  train "rm-opt-350m-$dtype" phase2_reward --model_config "$CONFIGS/opt-350m.json" --learning_rate 5e-5 --dropout 0.0 "${common[@]}"
done
train ppo-bf16 phase3_ppo --unsup_shards "$OUT" --actor_model_name_or_path "$RUNS/sft-opt-1.3b-bf16" \
  --critic_model_name_or_path "$RUNS/rm-opt-350m-bf16" --per_device_generation_batch_size "$BATCH" \
  --per_device_training_batch_size "$BATCH" --max_answer_seq_len 128 --max_steps "$PPO_STEPS" --dtype bf16 --actor_zero_stage 2 \
  --critic_zero_stage 2 --enable_ema --actor_dropout 0.0 --critic_dropout 0.0 --num_warmup_steps 0
train dpo-opt-350m-bf16 phase2_dpo --model_config "$CONFIGS/opt-350m.json" --per_device_train_batch_size "$BATCH" \
  --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4 --learning_rate 5e-5 --weight_decay 0.1 --dtype bf16 --zero_stage 3
train lora-sft-opt-1.3b-bf16 phase1_sft --model_config "$CONFIGS/opt-1.3b.json" --per_device_train_batch_size "$BATCH" \
  --per_device_eval_batch_size "$BATCH" --max_steps "$STEPS" --eval_iters 4 --learning_rate 9.65e-6 --dtype bf16 --zero_stage 3 \
  --lora_dim 128 --lora_module_name decoder.layers. --only_optimize_lora
