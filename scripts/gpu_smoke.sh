#!/usr/bin/env bash
# One prepared command for a GPU box: short phase-1 and phase-2 runs on every local GPU, then the
# tokens/s each reached, then a short phase-3 (PPO) run from those two checkpoints with PTX and EMA. Works offline: a GPT-2 (124M) built from a config, HH-RLHF from ../shared/data
# (or the shipped sample) and the GPT-2 tokenizer (or the shipped one).
#   bash scripts/gpu_smoke.sh            STEPS=50 BATCH=8 to change the run length / per-GPU batch
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-50}
BATCH=${BATCH:-8}
DATA=../shared/data/hh-rlhf
TOKENIZER=../shared/data/tokenizers/gpt2/tokenizer.json
[ -d "$DATA" ] || DATA=data/sample-hh
[ -f "$TOKENIZER" ] || TOKENIZER=data/tokenizer/tokenizer.json
OUT=out/gpu-smoke
mkdir -p checkpoints/gpu-smoke
make -s .venv/.trainer
# --unsup: the dialogues double as PTX text (their first string column) for the phase-3 run.
.venv/bin/dataprep prepare --data "$DATA" --tokenizer "$TOKENIZER" --split 4,4,2 --out "$OUT" --unsup "$DATA" --quiet > /dev/null
NGPUS=$(nvidia-smi -L | grep -c '^GPU')
CONFIG=packages/trainer/src/trainer/configs/gpt2-124m.json
for phase in phase1_sft phase2_reward; do
  .venv/bin/deepspeed --num_gpus "$NGPUS" "packages/trainer/src/trainer/$phase.py" --shards "$OUT" --model_config "$CONFIG" \
    --per_device_train_batch_size "$BATCH" --max_steps "$STEPS" --dtype bf16 --zero_stage 2 --learning_rate 1e-4 \
    --output_dir "checkpoints/gpu-smoke/$phase" > "checkpoints/gpu-smoke-$phase.log" 2>&1 \
    || { tail -30 "checkpoints/gpu-smoke-$phase.log"; exit 1; }
  .venv/bin/python - "$phase" "checkpoints/gpu-smoke/$phase/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[2]) if '"tokens_per_s"' in l]
steady = rows[len(rows) // 5:] or rows  # skip warm-up steps
tps = sum(r["tokens_per_s"] for r in steady) / len(steady)
wait = sum(r["data_wait_frac"] for r in steady) / len(steady)
print(f"{sys.argv[1]}: {len(rows)} steps, {tps:,.0f} tokens/s (all GPUs), data wait {100 * wait:.2f}% of step time, final loss {rows[-1]['loss']:.3f}")
PY
done
PHASE3=checkpoints/gpu-smoke/phase3_ppo
.venv/bin/deepspeed --num_gpus "$NGPUS" packages/trainer/src/trainer/phase3_ppo.py --shards "$OUT" --unsup_shards "$OUT" \
  --actor_model_name_or_path checkpoints/gpu-smoke/phase1_sft --critic_model_name_or_path checkpoints/gpu-smoke/phase2_reward \
  --per_device_generation_batch_size "$BATCH" --per_device_training_batch_size "$BATCH" --max_answer_seq_len 64 \
  --max_steps "$STEPS" --dtype bf16 --actor_zero_stage 2 --critic_zero_stage 2 --enable_ema --num_warmup_steps 0 \
  --output_dir "$PHASE3" > "$PHASE3.log" 2>&1 || { tail -30 "$PHASE3.log"; exit 1; }
.venv/bin/python - "$PHASE3/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gen, train = sum(r["generation_s"] for r in rows), sum(r["training_s"] for r in rows)
print(f"phase3_ppo: {len(rows)} rounds, reward {rows[0]['reward']:.3f} -> {rows[-1]['reward']:.3f}, kl {rows[-1]['kl']:.3f}, "
      f"generation {gen:.1f} s, training {train:.1f} s")
PY
