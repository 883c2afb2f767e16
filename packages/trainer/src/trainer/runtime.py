"""What every phase's script shares: distributed start-up, the DeepSpeed engines (config, optimizer,
schedule), shard loaders, the tokenizer check and the metrics log. Engines are described by typed
values (EngineSpec, OptimSpec), so each phase says what it needs without building fake flags."""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import resource
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dataprep import DataprepError, load_tokenizer
from dataprep.format import TokenizerInfo
from trainer.flags import OFFLOAD_NEEDS_ZERO
from trainer.lora import is_lora

NO_DECAY = ("bias", "layer_norm.weight", "layernorm.weight", "norm.weight", "ln_f.weight", "ln_1.weight", "ln_2.weight")


@dataclass(frozen=True)
class EngineSpec:
    """What one DeepSpeed engine runs with."""

    micro_batch: int  # rows per micro-batch on each rank
    accumulation: int  # micro-batches per optimizer step
    zero_stage: int
    dtype: str  # "bf16" | "fp16" | "fp32"
    offload: bool = False  # optimizer state on the CPU
    offload_params: bool = False  # parameters on the CPU (ZeRO-3 inference engines)


@dataclass(frozen=True)
class OptimSpec:
    """AdamW and its learning-rate schedule."""

    learning_rate: float
    weight_decay: float
    scheduler: str  # "cosine" | "linear" | "constant", after the warm-up
    warmup_steps: int
    total_steps: int
    lora_learning_rate: float | None = None  # the LoRA weights' (None: learning_rate)


def one_line_errors(main: Callable) -> Callable:
    """For a script's main: bad input (a damaged, changed or mismatched shard, say) ends the run with
    one line naming it, not a traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except DataprepError as exc:
            raise SystemExit(f"trainer: {exc}") from None

    return wrapped


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Without a launcher, a one-process group on a free local port."""
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed.ops

        # DeepSpeed JIT-compiles a shared-memory op (~30 s) on every CPU start; gloo does the same job.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), device


def ds_config(spec: EngineSpec, world: int) -> dict:
    """The DeepSpeed config of one engine. With `offload`, ZeRO keeps the optimizer state on the CPU
    (and, at stage 3, the parameters too, as DeepSpeed-Chat's --offload does), which is what
    `optimizer` then builds CPU Adam for: the two always agree."""
    if spec.offload and spec.zero_stage == 0:
        raise ValueError(OFFLOAD_NEEDS_ZERO)
    zero = {"stage": spec.zero_stage, "overlap_comm": torch.cuda.is_available()}
    if spec.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
    if spec.zero_stage > 0:
        # DeepSpeed's default buckets (5e8 elements: 1 GB in fp16) are sized for the largest models;
        # 1e7 (20 MB in fp16) still fills the links and leaves that memory to the model (docs/benchmarks.md).
        zero.update(reduce_bucket_size=1e7, allgather_bucket_size=1e7)
    if spec.zero_stage == 3:
        zero.update(stage3_param_persistence_threshold=1e4, stage3_max_live_parameters=3e7, stage3_prefetch_bucket_size=3e7)
    if spec.offload_params or (spec.offload and spec.zero_stage == 3):
        zero["offload_param"] = {"device": "cpu"}
    config = {
        "train_micro_batch_size_per_gpu": spec.micro_batch,
        "gradient_accumulation_steps": spec.accumulation,
        "train_batch_size": spec.micro_batch * spec.accumulation * world,
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if spec.dtype == "bf16":
        config["bf16"] = {"enabled": True}
    elif spec.dtype == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale_window": 100}
    return config


def adam_class(spec: EngineSpec) -> type[torch.optim.Optimizer]:
    """DeepSpeed's CPU Adam where ZeRO keeps the optimizer state on the CPU (`ds_config` with offload),
    else torch's AdamW, which works on CPU and GPU alike and needs no JIT-compiled op."""
    if spec.offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam
    return torch.optim.AdamW


def optimizer(model: torch.nn.Module, spec: EngineSpec, optim: OptimSpec) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters: no weight decay on biases and norms, and the LoRA weights
    at their own learning rate (DeepSpeed-Chat's groups)."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = 0.0 if any(k in name for k in NO_DECAY) else optim.weight_decay
            lr = optim.lora_learning_rate if is_lora(name) and optim.lora_learning_rate is not None else optim.learning_rate
            groups.setdefault((decay, lr), []).append(param)
    params = [{"params": p, "weight_decay": decay, "lr": lr} for (decay, lr), p in groups.items()]
    return adam_class(spec)(params, lr=optim.learning_rate, betas=(0.9, 0.95))


def scheduler(opt: torch.optim.Optimizer, optim: OptimSpec) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / max(1, optim.warmup_steps)
        progress = (step - optim.warmup_steps) / max(1, optim.total_steps - optim.warmup_steps)
        if optim.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if optim.scheduler == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def trained_engine(model: torch.nn.Module, spec: EngineSpec, optim: OptimSpec, world: int):
    """A DeepSpeed engine that trains `model` with AdamW and the schedule."""
    import deepspeed

    opt = optimizer(model, spec, optim)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=scheduler(opt, optim), config=ds_config(spec, world))
    return engine


def frozen_engine(model: torch.nn.Module, spec: EngineSpec, world: int):
    """An inference-only engine (phase 3's reference and reward models), in eval mode."""
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model.requires_grad_(False), config=ds_config(spec, world))
    engine.eval()
    return engine


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler, able to start an epoch part-way through: `skip` indices of the
    current epoch were consumed before a resume (set it back to 0 for the next epoch)."""

    skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return super().__len__() - self.skip


def loader(dataset, collate, batch_size: int, rank: int, world: int, seed: int, shuffle: bool, drop_last: bool = False):
    """Each rank reads its own part; call `loader.sampler.set_epoch(epoch)` every epoch. `drop_last`
    leaves out a last batch shorter than `batch_size`."""
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=shuffle)
    # Its own generator: a DataLoader otherwise draws from the global RNG every time an epoch starts, and a
    # resumed run, which starts its epoch at another moment, would then sample (and drop out) differently.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed))


def check_tokenizer(shards: Path, info: TokenizerInfo, model_name_or_path: str | None, model_config) -> None:
    """Stop when the shards were tokenized with another tokenizer than the model's, or when the
    model's special ids disagree with the shards'."""
    if model_name_or_path is not None:
        try:
            theirs = load_tokenizer(model_name_or_path)
        except DataprepError as exc:
            raise SystemExit(f"trainer: cannot load the tokenizer of {model_name_or_path} to check it against the shards ({exc})") from None
        if theirs.fingerprint != info.fingerprint:
            raise SystemExit(
                f"trainer: {shards} was tokenized with {info.spec} (fingerprint {info.fingerprint[:12]}), but "
                f"{model_name_or_path} has another tokenizer ({theirs.fingerprint[:12]}); every model of a run must share the shards' "
                f"tokenizer: use models that do, or prepare again with dataprep prepare --tokenizer {model_name_or_path}"
            )
    eos = getattr(model_config, "eos_token_id", None)
    if eos is not None and eos != info.eos_id:
        raise SystemExit(f"trainer: the model's eos_token_id is {eos} but the shards end rows with {info.eos_id}; check --tokenizer/--eos-token of prepare")
    pad = getattr(model_config, "pad_token_id", None)
    if pad is not None and info.pad_id is not None and pad != info.pad_id:
        raise SystemExit(f"trainer: the model's pad_token_id is {pad} but the shards' tokenizer pads with {info.pad_id}; use the model's tokenizer in prepare")


class StepWindow:
    """Accounting for one optimizer step: the summed loss, tokens, samples and the time spent waiting on data."""

    def __init__(self, world: int, accumulation: int):
        self.world, self.accumulation = world, accumulation
        self.reset()

    def reset(self) -> None:
        self.loss, self.tokens, self.samples, self.wait = 0.0, 0, 0, 0.0
        self.logged: dict[str, float] = {}
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def add(self, loss_sum: float, tokens: int, samples: int, logged: dict[str, float] | None = None) -> None:
        self.loss += loss_sum
        for name, value in (logged or {}).items():
            self.logged[name] = self.logged.get(name, 0.0) + float(value) / self.accumulation
        self.tokens += tokens * self.world
        self.samples += samples * self.world

    def summary(self, device, units: float) -> dict:
        """The loss as the mean over the step's `units` (all ranks), the logged values averaged over ranks,
        throughput over all ranks, the data-wait share of the step, and the CPU seconds this rank's threads
        spent in it (beside the wall time: what other load on the machine does not inflate)."""
        elapsed = time.perf_counter() - self.start
        names = sorted(self.logged)
        sums = torch.tensor([self.loss, *(self.logged[n] for n in names)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)
        loss, *logged = sums.tolist()
        return {"loss": loss / max(units, 1.0), "units": int(units), **{n: v / self.world for n, v in zip(names, logged)},
                "tokens_per_s": self.tokens / elapsed, "samples_per_s": self.samples / elapsed,
                "step_time_s": elapsed, "step_cpu_s": time.process_time() - self.cpu, "data_wait_s": self.wait,
                "data_wait_frac": self.wait / elapsed, **peak_memory(device)}


def peak_memory(device: torch.device) -> dict:
    """The largest peak over all ranks so far: resident host memory, and on a GPU what torch allocated."""
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]  # KiB on Linux
    if device.type == "cuda":
        peaks.append(torch.cuda.max_memory_allocated(device) / 2**20)
    peaks = torch.tensor(peaks, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)
    names = ("host_peak_mb", "gpu_peak_mb")
    return {name: round(value) for name, value in zip(names, peaks.tolist())}


class Metrics:
    """One JSON line per step in OUTPUT_DIR/metrics.jsonl, and a PNG of the loss curve at the end.
    `keep` (a resumed run): the file's first `keep` lines are the run so far; later ones are dropped."""

    def __init__(self, path: Path, enabled: bool, keep: int = 0):
        self.path, self.enabled, self.rows = path, enabled, []
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = path.read_text().splitlines()[:keep] if keep else []
            self.rows = [json.loads(line) for line in lines]
            path.write_text("".join(line + "\n" for line in lines))

    @property
    def lines(self) -> int:
        return len(self.rows)

    def log(self, **values) -> None:
        if not self.enabled:
            return
        row = {"time": round(time.time(), 3), **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}}
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def plot(self, png: Path, panels: tuple[tuple[str, ...], ...] = (("loss",),)) -> None:
        """One chart per panel, each with its keys' curves against the step (panels with no data are left out)."""
        if not self.enabled or not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = tuple(keys for keys in panels if any(key in r for r in self.rows for key in keys))
        fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3 * len(panels)), squeeze=False)
        for ax, keys in zip(axes[:, 0], panels):
            for key in keys:
                points = [(r["step"], r[key]) for r in self.rows if key in r]
                if points:  # eval points are few: mark them
                    ax.plot(*zip(*points), label=key, marker="o" if key.startswith("eval") or len(points) < 3 else None)
            ax.legend()
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)
