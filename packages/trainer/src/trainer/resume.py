"""Resumable checkpoints (--save_steps, --resume_from): long GPU runs die, and a resumed run must go on
exactly where the dead one stopped; and a finished run is never silently continued by another command.

Every --save_steps optimizer steps (phase 3: prompt batches, at the end of a round) each DeepSpeed
engine writes its checkpoint (weights, optimizer, schedule) to OUTPUT_DIR/checkpoints/step-NNNNNNNN/,
every rank writes its RNG states beside it, and rank 0 seals it last with `complete.json`: the loop's
position (step, epoch, micro-batches into the epoch, whatever the phase adds), how many lines of
metrics.jsonl belong to it, and the run's identity. A directory without that file is an unfinished
save and is never resumed from. The newest --keep complete checkpoints are kept.

A run's identity (`identity`) is its script and every flag that changes what is trained: all but those
that only say where or how often things are written or evaluated (NOT_TRAINED), with the shards, the
tokenizer and a --model_config by content, the world size, and what the script adds (DPO: its
reference's fingerprint). A run resumes from --resume_from, or else from the newest complete checkpoint
in its --output_dir, only when the identities are equal; otherwise one line names each flag that
differs, with both values. A run that ends writes OUTPUT_DIR/finished.json (`finish`): the same command
run there again says so and exits 0 without training; any other command there is refused (`check`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
COMPLETE = "complete.json"
FINISHED = "finished.json"
# Flags that only say where or how often things are written or evaluated: the same run whatever they are.
NOT_TRAINED = ("output_dir", "save_steps", "resume_from", "local_rank", "eval_interval", "eval_iters", "per_device_eval_batch_size")
# Flags that name inputs whose content the identity holds instead (a moved directory is the same input).
BY_CONTENT = ("shards", "model_config", "unsup_shards")


def identity(script: str, flags, **facts) -> dict:
    """What a checkpoint must share with this run for the run to continue it: the script, each flag that
    changes what is trained (as `--name`: value), and `facts` (content hashes, the world size, ...)."""
    trained = {f"--{f.name}": _plain(getattr(flags, f.name)) for f in fields(flags) if f.name not in NOT_TRAINED + BY_CONTENT}
    return {"script": script, **trained, **facts}


def differences(theirs: dict, ours: dict) -> str:
    """'--beta: 0.1 there, 0.5 here; ...' for every key whose value differs ('' when none does)."""
    keys = [k for k in dict.fromkeys([*theirs, *ours]) if theirs.get(k) != ours.get(k)]
    return "; ".join(f"{k}: {_shown(theirs.get(k))} there, {_shown(ours.get(k))} here" for k in keys)


def check(output_dir: Path, resume_from: Path | None, identity: dict, rank: int) -> bool:
    """Before anything is built: True when OUTPUT_DIR holds this very run, finished (rank 0 says so, and
    there is nothing to do). A finished run of another command there, or a checkpoint to resume from
    that belongs to another run, is refused with one line. False: train (afresh, or resuming)."""
    marker = output_dir / FINISHED
    if marker.is_file():
        record = _record(marker)
        differ = differences(record["identity"], identity)
        if differ:
            raise SystemExit(f"trainer: {output_dir} holds a finished run of another command ({differ}); give another "
                             f"--output_dir, or delete {output_dir} to train there again")
        if rank == 0:
            print(f"trainer: {output_dir} already holds this run, finished at step {record['step']}; nothing to do "
                  f"(delete {marker} to train it again)", flush=True)
        return True
    start = resume_from or newest(output_dir)
    if start is not None and (start / COMPLETE).is_file():
        _same_run(start, _record(start / COMPLETE), identity)
    return False


def finish(output_dir: Path, identity: dict, step: int, rank: int) -> None:
    """Mark OUTPUT_DIR's run finished, once its model is saved (every rank calls it)."""
    torch.distributed.barrier()
    if rank == 0:
        tmp = output_dir / f".{FINISHED}.tmp"
        tmp.write_text(json.dumps({"step": step, "identity": identity}, indent=2))
        os.replace(tmp, output_dir / FINISHED)
    torch.distributed.barrier()


def _record(path: Path) -> dict:
    """A marker this module wrote (complete.json, finished.json); a damaged one is refused in one line."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"trainer: {path} cannot be read ({type(exc).__name__}); delete it (and its run) to start afresh") from None


def _same_run(tag_dir: Path, record: dict, identity: dict) -> None:
    differ = differences(record["identity"], identity)
    if differ:
        raise SystemExit(f"trainer: {tag_dir} belongs to another run ({differ}); resume with the same command, "
                         "or start afresh in another --output_dir")


def _plain(value):
    """A flag's value as JSON keeps it (paths as strings), so a saved identity compares equal to a new one."""
    return str(value) if isinstance(value, Path) else value


def _shown(value) -> str:
    return "unset" if value is None else repr(value)


def newest(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under OUTPUT_DIR/checkpoints, or None."""
    found = sorted(p for p in (output_dir / CHECKPOINTS).glob("step-*") if (p / COMPLETE).is_file())
    return found[-1] if found else None


def save(output_dir: Path, step: int, engines: dict, position: dict, identity: dict, metrics_lines: int, rank: int,
         generators: dict[str, torch.Generator] | None = None, states: dict[str, object] | None = None, keep: int = 2) -> Path:
    """Write one checkpoint (every rank must call it); returns its directory. `states`: this rank's
    own objects to keep (a rank that holds nobody else's state passes none, and reads rank 0's)."""
    tag_dir = output_dir / CHECKPOINTS / f"step-{step:08d}"
    for name, engine in engines.items():
        engine.save_checkpoint(str(tag_dir), tag=name, save_latest=False)
    for name, value in {"rng": _rng_states(generators or {}), **(states or {})}.items():
        torch.save(value, tag_dir / f"{name}-rank{rank}.pt")
    torch.distributed.barrier()
    if rank == 0:
        tmp = tag_dir / f".{COMPLETE}.tmp"
        tmp.write_text(json.dumps({"step": step, "position": position, "identity": identity, "metrics_lines": metrics_lines}, indent=2))
        os.replace(tmp, tag_dir / COMPLETE)
        complete = sorted(p for p in (output_dir / CHECKPOINTS).glob("step-*") if (p / COMPLETE).is_file())
        for old in complete[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    torch.distributed.barrier()
    return tag_dir


def restore(output_dir: Path, resume_from: Path | None, engines: dict, identity: dict, rank: int,
            generators: dict[str, torch.Generator] | None = None) -> dict | None:
    """Restore `resume_from`, or else the newest complete checkpoint in OUTPUT_DIR; None when there is
    none (a fresh start)."""
    start = resume_from or newest(output_dir)
    return load(start, engines, identity, rank, generators) if start else None


def load(tag_dir: Path, engines: dict, identity: dict, rank: int, generators: dict[str, torch.Generator] | None = None) -> dict:
    """Restore a checkpoint into the engines and this rank's RNGs; returns what `save` recorded, and
    its directory under "dir"."""
    sealed = tag_dir / COMPLETE
    if not sealed.is_file():
        raise SystemExit(f"trainer: {tag_dir} is not a complete checkpoint (no {COMPLETE}: its save was interrupted); resume from an older one")
    record = _record(sealed)
    _same_run(tag_dir, record, identity)
    for name, engine in engines.items():
        path, _ = engine.load_checkpoint(str(tag_dir), tag=name, load_module_strict=True)
        if path is None:
            raise SystemExit(f"trainer: {tag_dir / name}: DeepSpeed found no checkpoint to load")
    _set_rng_states(read_state(tag_dir, "rng", rank), generators or {})
    return {**record, "dir": tag_dir}


def read_state(tag_dir: Path, name: str, rank: int):
    """What `save` kept under `name` for this rank, or rank 0's when this rank kept none."""
    own = tag_dir / f"{name}-rank{rank}.pt"
    return torch.load(own if own.is_file() else tag_dir / f"{name}-rank0.pt", weights_only=False)


def kill_point(step: int) -> None:
    """For the resume tests: TRAINER_KILL_AT_STEP=N kills the process with SIGKILL once step N is done."""
    if os.environ.get("TRAINER_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _rng_states(generators: dict[str, torch.Generator]) -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": random.getstate(), "numpy": np.random.get_state(), "generators": {k: g.get_state() for k, g in generators.items()}}


def _set_rng_states(states: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])
