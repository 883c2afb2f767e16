"""Flags as typed values. Each phase's flags are one frozen dataclass (DeepSpeed-Chat's names; a help
string per field), and its command line is generated from it, so a flag is declared in one place and
Python callers build the same value the command line does.

    RunFlags      what every phase takes: the shards, the output, the schedule, precision, seed
    TrainFlags    phases 1 and 2 and DPO: one model trained on one phase's shards, optionally with LoRA
    (phase 3's PPOFlags, in phase3_ppo.py, adds its four models' flags to RunFlags)
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from trainer.lora import LoraSpec

OFFLOAD_NEEDS_ZERO = "--offload moves ZeRO's optimizer state to the CPU, and ZeRO stage 0 has none: use ZeRO stage 1, 2 or 3 with it"
DEFAULT_DTYPE = "bf16" if torch.cuda.is_available() else "fp32"
SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("bf16", "fp16", "fp32")
ZERO_STAGES = (0, 1, 2, 3)


def flag(default: Any = MISSING, help: str = "", choices: tuple | None = None) -> Any:
    """A dataclass field that is also a command-line flag; no default makes the flag required."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True, kw_only=True)
class RunFlags:
    shards: Path = flag(help="a `dataprep prepare` output directory")
    output_dir: Path = flag(help="where the checkpoint, metrics.jsonl and the plots go")
    num_train_epochs: int = flag(1, "passes over the training shards")
    max_steps: int = flag(0, "stop after this many optimizer steps (0: run the epochs)")
    gradient_accumulation_steps: int = flag(1, "micro-batches per optimizer step")
    lr_scheduler_type: str = flag("cosine", "learning-rate schedule after the warm-up", SCHEDULERS)
    num_warmup_steps: int = flag(0, "linear warm-up steps")
    seed: int = flag(1234, "seed of the model init, the data order and sampling")
    offload: bool = flag(False, "ZeRO CPU offload of the optimizer state")
    dtype: str = flag(DEFAULT_DTYPE, "training precision", DTYPES)
    save_steps: int = flag(0, "save a resumable checkpoint every N optimizer steps (phase 3: prompt batches) into "
                              "OUTPUT_DIR/checkpoints, keeping the newest 2 (0: never)")
    resume_from: Path | None = flag(None, "resume from this checkpoint (default: the newest complete one in --output_dir, if any)")
    local_rank: int = flag(-1, "set by the deepspeed launcher")


@dataclass(frozen=True, kw_only=True)
class TrainFlags(RunFlags):
    model_name_or_path: str | None = flag(None, "Hugging Face model id or directory")
    model_config: Path | None = flag(None, "build a fresh model from this config.json instead (tests, CPU runs)")
    per_device_train_batch_size: int = flag(16, "rows per micro-batch on each rank")
    per_device_eval_batch_size: int = flag(16, "rows per eval batch on each rank")
    learning_rate: float = flag(help="peak learning rate")
    weight_decay: float = flag(0.0, "AdamW weight decay (never on biases and norms)")
    zero_stage: int = flag(0, "DeepSpeed ZeRO stage", ZERO_STAGES)
    dropout: float | None = flag(None, "set every dropout of the model to this (DeepSpeed-Chat's step 2 uses 0.0; default: the model's own)")
    gradient_checkpointing: bool = flag(False, "recompute activations in the backward pass")
    pad_to_max: bool = flag(False, "pad every batch to max_seq_len, as DeepSpeed-Chat does")
    packing: bool = flag(False, "pack rows (phase 2: pairs) into sequences of at most max_seq_len tokens, each row attending only "
                                "to itself; --per_device_train_batch_size then counts packs (eval stays unpacked)")
    eval_interval: int = flag(0, "evaluate every N optimizer steps (0: only at the start and the end)")
    eval_iters: int = flag(100, "at most this many eval batches")
    lora_dim: int = flag(0, "LoRA rank on the layers --lora_module_name picks (0: no LoRA); their weights are then frozen")
    lora_module_name: str = flag("decoder.layers.", "LoRA on every linear layer whose name contains this")
    only_optimize_lora: bool = flag(False, "train the LoRA weights alone (and a reward model's head)")
    lora_learning_rate: float = flag(5e-4, "the LoRA weights' peak learning rate")

    @property
    def lora(self) -> LoraSpec:
        return LoraSpec(self.lora_dim, self.lora_module_name, self.only_optimize_lora, self.lora_learning_rate)

    def __post_init__(self) -> None:
        if (self.model_name_or_path is None) == (self.model_config is None):
            raise ValueError("give one of --model_name_or_path (a hub id or directory) or --model_config (a config.json)")
        if self.offload and self.zero_stage == 0:
            raise ValueError(OFFLOAD_NEEDS_ZERO + " (--zero_stage)")
        if self.lora_dim < 0:
            raise ValueError(f"--lora_dim {self.lora_dim}: a rank, 0 (no LoRA) or more")


F = TypeVar("F", bound=RunFlags)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse(cls: type[F], description: str, argv: list[str] | None = None) -> F:
    """`cls` from the command line: one `--name` per field, typed, with its help and default."""
    parser = _Parser(description=description)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kind, meta = hints[f.name], f.metadata
        if kind is bool:
            parser.add_argument(f"--{f.name}", action="store_true", help=meta["help"])
            continue
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        required = f.default is MISSING
        shown = "" if required or f.default is None else f" (default: {f.default})"
        parser.add_argument(f"--{f.name}", type=kind, required=required, default=None if required else f.default,
                            choices=meta["choices"], help=meta["help"] + shown)
    args = parser.parse_args(argv)
    try:
        return cls(**vars(args))
    except ValueError as exc:
        parser.error(str(exc))
