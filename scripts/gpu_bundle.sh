#!/usr/bin/env bash
# Fill DIR with what an offline GPU box lacks to run scripts/gpu_smoke.sh, on a CPU machine with network:
#   DIR/wheels/   DeepSpeed (its sdist built here into a pure-Python wheel: its ops compile on the GPU at
#                 first use), our two packages, and what DeepSpeed needs that the box's image does not hold
#                 (pydantic and its parts, hjson), for CPython 3.11 (make gpu-rehearsal) and 3.12 (the box)
#   DIR/shards/   the prepared shards the smoke run reads (HH-RLHF from ../shared/data with GPT-2's
#                 tokenizer when present, else the shipped sample), with PTX blocks for phase 3
# The box's image (torch 2.11, transformers 5.17, accelerate, peft, pyarrow, tokenizers, sentencepiece,
# safetensors, numpy, matplotlib, msgpack, ninja, psutil, py-cpuinfo, einops, tqdm, protobuf) provides the
# rest; make gpu-rehearsal checks that on the CPU with those versions. The bundle must stay under 48 MiB.
#   bash scripts/gpu_bundle.sh gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: scripts/gpu_bundle.sh DIR}
PY=${PYTHON:-.venv/bin/python}
LIMIT_MB=48
# What DeepSpeed requires that the box lacks: each at the version this project's CI runs with.
MISSING=(hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

make -s .venv/.trainer
rm -rf "$DIR"
mkdir -p "$DIR/wheels"
pip() {  # quiet, less this machine's warnings about local mirror folders
  "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
pip wheel --no-deps -w "$DIR/wheels" packages/dataprep packages/trainer
DS_BUILD_OPS=0 pip wheel --no-deps -w "$DIR/wheels" "deepspeed==$("$PY" -c 'import importlib.metadata as m; print(m.version("deepspeed"))')"
for python in 3.11 3.12; do
  pip download --no-deps --only-binary=:all: --implementation cp --python-version "$python" \
    "${PLATFORMS[@]/#/--platform=}" -d "$DIR/wheels" "${MISSING[@]}"
done

DATA=../shared/data/hh-rlhf
TOKENIZER=../shared/data/tokenizers/gpt2/tokenizer.json
[ -d "$DATA" ] || DATA=data/sample-hh
[ -f "$TOKENIZER" ] || TOKENIZER=data/tokenizer/tokenizer.json
# --unsup: the dialogues double as PTX text (their first string column) for the phase-3 run.
.venv/bin/dataprep prepare --data "$DATA" --tokenizer "$TOKENIZER" --split 4,4,2 --max-seq-len 512 --max-prompt-len 256 \
  --out "$DIR/shards" --unsup "$DATA" --quiet > /dev/null
rm -rf "$DIR/shards/normalized" "$DIR/shards/dropped"  # the trainers read the phase shards and the manifest only

size=$(du -sb "$DIR" | cut -f1)
echo "gpu bundle: $DIR, $((size / 1024 / 1024)) MiB ($DATA, $(basename "$(dirname "$TOKENIZER")") tokenizer)"
(cd "$DIR" && find . -type f -printf '%s %p\n' | sort -k2 | awk '{printf "  %8.1f KiB  %s\n", $1 / 1024, $2}')
if [ "$size" -gt $((LIMIT_MB * 1024 * 1024)) ]; then
  echo "gpu bundle: over $LIMIT_MB MiB; prepare less data" >&2
  exit 1
fi
