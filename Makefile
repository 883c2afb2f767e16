# The two commands a fresh machine needs: `make prepare` and `make test`. Each creates or refreshes
# .venv from the pinned requirements when they change, then runs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# make prepare: the embedded offline default, or e.g. `make prepare DATA=hh SPLIT=6,2,2`.
DATA ?= data/sample-hh
SPLIT ?= 2,4,4
SEED ?= 1234
MAX_SEQ_LEN ?= 512
MAX_PROMPT_LEN ?= 256
ifeq ($(DATA),hh)
TOKENIZER ?= facebook/opt-1.3b
endif
TOKENIZER ?= data/tokenizer/tokenizer.json
OUT ?= out/$(notdir $(DATA))
DATA_DIR ?=
PREPARE_ARGS ?=
UNSUP ?=
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
PLOT ?=

BENCH_ARGS ?=

# make train-phase1 / train-phase2: on a GPU box, DeepSpeed-Chat's OPT defaults through the deepspeed
# launcher on every local GPU (prepare first with `make prepare DATA=hh`, which uses OPT's tokenizer);
# without a GPU, a tiny GPT-2 built from a config on the embedded default, so the targets run offline, packed
# (--packing stays off on GPUs until a GPU run confirms it).
NGPUS := $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
CKPT ?= checkpoints/$(notdir $(OUT))
TINY := packages/trainer/src/trainer/configs/tiny-gpt2.json
ifeq ($(NGPUS),0)
LAUNCH := $(PY)
PHASE1_ARGS ?= --model_config $(TINY) --per_device_train_batch_size 8 --max_steps 60 --learning_rate 3e-3 --dtype fp32 --packing
PHASE2_ARGS ?= --model_config $(TINY) --per_device_train_batch_size 8 --max_steps 60 --learning_rate 1e-3 --dtype fp32 --packing
PHASE3_ARGS ?= --per_device_generation_batch_size 8 --per_device_training_batch_size 8 --max_answer_seq_len 32 --max_steps 20 \
	--actor_learning_rate 1e-4 --critic_learning_rate 1e-4 --num_warmup_steps 0 --dtype fp32
# DPO starts from the tiny phase-1 checkpoint (trained first when missing).
DPO_FROM := $(CKPT)/phase1
DPO_ARGS ?= --per_device_train_batch_size 8 --max_steps 60 --learning_rate 1e-3 --eval_interval 20 --dtype fp32
else
LAUNCH := $(VENV)/bin/deepspeed --num_gpus $(NGPUS)
PHASE1_ARGS ?= --model_name_or_path facebook/opt-1.3b --per_device_train_batch_size 8 --per_device_eval_batch_size 8 \
	--learning_rate 9.65e-6 --num_train_epochs 16 --zero_stage 2 --dtype fp16 --gradient_checkpointing
PHASE2_ARGS ?= --model_name_or_path facebook/opt-350m --per_device_train_batch_size 4 --per_device_eval_batch_size 4 \
	--learning_rate 5e-5 --weight_decay 0.1 --num_train_epochs 1 --zero_stage 0 --dtype fp16 --dropout 0.0
# DeepSpeed-Chat's opt/single_node/run_1.3b step 3 (its hybrid engine aside).
PHASE3_ARGS ?= --per_device_generation_batch_size 4 --per_device_training_batch_size 4 --generation_batches 1 --ppo_epochs 1 \
	--max_prompt_seq_len 256 --max_answer_seq_len 256 --pad_to_max --actor_learning_rate 9.65e-6 --critic_learning_rate 5e-6 \
	--num_train_epochs 1 --num_warmup_steps 100 --actor_zero_stage 2 --critic_zero_stage 2 --enable_ema --actor_dropout 0.0 --critic_dropout 0.0 --dtype fp16
# DeepSpeed-Chat's opt/single_node/run_350m DPO recipe (DPO_FROM=$(CKPT)/phase1 starts from phase 1 instead).
DPO_FROM ?= facebook/opt-350m
DPO_ARGS ?= --per_device_train_batch_size 4 --per_device_eval_batch_size 4 --learning_rate 5e-5 --weight_decay 0.1 --num_train_epochs 1 \
	--lr_scheduler_type cosine --zero_stage 0 --dtype fp16 --dropout 0.0 --beta 0.1
endif

.PHONY: prepare test inspect bench bench-trainer wheels gpu-bundle gpu-rehearsal train-phase1 train-phase2 train-phase3 train-dpo clean help

help:
	@echo "make prepare [DATA=hh|PATH] [SPLIT=2,4,4] [SEED=1234] [TOKENIZER=...] [DATA_DIR=...] [OUT=...]"
	@echo "make test     install everything (torch first) and run the test-suite"
	@echo "make inspect [PLOT=FILE.png]   describe OUT per phase and side (rows, tokens, truncation, drops, overlap)"
	@echo "make bench    dataprep vs DeepSpeed-Chat-style, HF datasets and the tokenizer ceiling; then what --packing saves training (needs ../shared)"
	@echo "make wheels   build the rlhfkit-dataprep and rlhfkit-trainer wheels into dist/"
	@echo "make bench-trainer   ZeRO-3 against ZeRO-0 memory and ZeRO-3 generation, 2 CPU ranks (needs ../shared)"
	@echo "make gpu-bundle      what an offline GPU box lacks for scripts/gpu_smoke.sh (wheels, shards) -> gpu-bundle/"
	@echo "make gpu-rehearsal   the GPU box emulated on the CPU: its package versions, the bundle, gpu_smoke.sh on tiny models"
	@echo "make train-phase1 / train-phase2   SFT / reward model on OUT's shards (GPU: OPT defaults; CPU: tiny model)"
	@echo "make train-phase3 [UNSUP=PATH]    PPO from the phase 1 and 2 checkpoints (trains them first if missing)"
	@echo "make train-dpo   DPO on OUT's phase-2 shards (GPU: OPT-350m, DeepSpeed-Chat's recipe; CPU: from the tiny phase-1 checkpoint)"

$(VENV)/.dataprep: requirements/dataprep.txt packages/dataprep/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/dataprep.txt
	$(PIP) install -q --no-deps -e packages/dataprep
	@touch $@

# torch is pinned in the same pip call as deepspeed: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.trainer: $(VENV)/.dataprep requirements/trainer.txt packages/trainer/pyproject.toml
	$(PIP) install -q -r requirements/trainer.txt
	$(PIP) install -q --no-deps -e packages/trainer
	@touch $@

$(VENV)/.test: $(VENV)/.trainer requirements/test.txt
	$(PIP) install -q -r requirements/test.txt
	@touch $@

prepare: $(VENV)/.dataprep
	$(VENV)/bin/dataprep prepare --data $(DATA) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		--split $(SPLIT) --seed $(SEED) --tokenizer $(TOKENIZER) \
		--max-seq-len $(MAX_SEQ_LEN) --max-prompt-len $(MAX_PROMPT_LEN) $(if $(UNSUP),--unsup $(UNSUP)) --out $(OUT) $(PREPARE_ARGS)

inspect: $(VENV)/.dataprep
	$(VENV)/bin/dataprep inspect $(OUT) $(if $(PLOT),--plot $(PLOT))

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
# Two workers (TEST_WORKERS=0: one process); a file's tests stay on one worker, with its fixtures.
test: $(VENV)/.test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

$(VENV)/.bench: $(VENV)/.test requirements/bench.txt
	$(PIP) install -q -r requirements/bench.txt
	@touch $@

bench: $(VENV)/.bench
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/packing.py

# Both wheels, each built from its own pyproject (the version from its package's __init__.py).
wheels: $(VENV)/.test
	$(PY) -m build --outdir dist packages/dataprep
	$(PY) -m build --outdir dist packages/trainer

bench-trainer: $(VENV)/.trainer
	$(PY) bench/zero3.py

# The GPU box is offline and brings its own Python stack (docs/gpu.md): scripts/gpu_bundle.sh packs what it
# lacks, and gpu-rehearsal runs scripts/gpu_smoke.sh on the CPU in a venv holding only the box's packages
# (its transformers, huggingface_hub and tokenizers versions; CPU torch), so a GPU visit is never spent
# on an install or import error.
BUNDLE ?= gpu-bundle
REHEARSAL := .rehearsal
BOX_PACKAGES := torch==2.13.0 transformers==5.17.0 huggingface_hub==1.33.0 tokenizers==0.23.2 sentencepiece==0.2.2 safetensors==0.8.0 \
	accelerate==1.15.0 peft==0.21.2 pyarrow numpy matplotlib msgpack ninja psutil py-cpuinfo einops tqdm protobuf

gpu-bundle: $(VENV)/.trainer
	bash scripts/gpu_bundle.sh $(BUNDLE)

$(REHEARSAL)/.box: Makefile
	@test -x $(REHEARSAL)/bin/python || $(PYTHON) -m venv $(REHEARSAL)
	$(REHEARSAL)/bin/python -m pip install -q --disable-pip-version-check $(BOX_PACKAGES)
	@touch $@

gpu-rehearsal: gpu-bundle $(REHEARSAL)/.box
	SMOKE_CPU=1 PYTHON=$(REHEARSAL)/bin/python SITE=$(CURDIR)/$(REHEARSAL)/site RUNS=checkpoints/gpu-rehearsal \
		bash scripts/gpu_smoke.sh $(BUNDLE)

train-phase1: $(VENV)/.trainer $(OUT)/manifest.json
	$(LAUNCH) packages/trainer/src/trainer/phase1_sft.py --shards $(OUT) --output_dir $(CKPT)/phase1 $(PHASE1_ARGS)

train-phase2: $(VENV)/.trainer $(OUT)/manifest.json
	$(LAUNCH) packages/trainer/src/trainer/phase2_reward.py --shards $(OUT) --output_dir $(CKPT)/phase2 $(PHASE2_ARGS)

train-phase3: $(VENV)/.trainer $(OUT)/manifest.json $(CKPT)/phase1/config.json $(CKPT)/phase2/config.json
	$(LAUNCH) packages/trainer/src/trainer/phase3_ppo.py --shards $(OUT) --actor_model_name_or_path $(CKPT)/phase1 \
		--critic_model_name_or_path $(CKPT)/phase2 --output_dir $(CKPT)/phase3 $(if $(UNSUP),--unsup_shards $(OUT)) $(PHASE3_ARGS)

train-dpo: $(VENV)/.trainer $(OUT)/manifest.json $(if $(filter $(CKPT)/%,$(DPO_FROM)),$(DPO_FROM)/config.json)
	$(LAUNCH) packages/trainer/src/trainer/phase2_dpo.py --shards $(OUT) --model_name_or_path $(DPO_FROM) --output_dir $(CKPT)/dpo $(DPO_ARGS)

# Phase 3 (and DPO on CPU) starts from the checkpoints of phases 1 and 2: train them first when they are missing.
$(CKPT)/phase1/config.json:
	$(MAKE) train-phase1
$(CKPT)/phase2/config.json:
	$(MAKE) train-phase2

# The shards the training targets read: `make prepare` writes them (with the same DATA/OUT).
$(OUT)/manifest.json:
	$(MAKE) prepare

clean:
	rm -rf out checkpoints dist .pytest_cache
