"""`dataprep prepare`: inputs -> normalized tables -> DeepSpeed-Chat split -> per-phase token shards.

The pipeline, top to bottom:
  1. resolve every --data argument to files, load the tokenizer, compute the cache key;
     an up-to-date output with the same key is reused;
  2. per dataset: read + normalize each file (drops counted by reason), pool the train and eval sides
     (carving 9,1 when there is only one side), split each side by --split;
  3. per phase and side: tokenize each dataset's part, blend the datasets (concatenate, then a seeded
     shuffle, as DeepSpeed-Chat does), write shards;
  4. write normalized/ and dropped/ tables, then the manifest, then move everything into place.
Everything is built in a staging directory inside --out; the manifest is written last, so an output
without a manifest (or with an old one) is never mistaken for a finished build.
"""

from __future__ import annotations

import datetime as dt
import errno
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dataprep import FORMAT_VERSION, __version__, faults, locking, manifest as mf, shards
from dataprep.errors import DataprepError
from dataprep.phases import PHASES, TOKEN_COLUMNS, encode_phase, length_stats, phase_schema
from dataprep.sources import SIDES, Dataset, read_canonical, resolve
from dataprep.split import CARVE_SPLIT, parse_split, shuffle_index, split_indices
from dataprep.tokenizer import Tokenizer, load_tokenizer

ENCODE_CHUNK = 2048  # rows per tokenizer call: large enough for the Rust thread pool, small for progress
OUTPUT_DIRS = ("phase1", "phase2", "phase3", "normalized", "dropped")  # commit order


@dataclass
class PrepareOptions:
    data: list[str]
    out: Path
    tokenizer: str
    split: str = "2,4,4"
    seed: int = 1234
    max_seq_len: int = 512
    max_prompt_len: int = 256
    data_dir: Path | None = None
    revision: str | None = None
    eos_token: str | None = None
    shard_bytes: int = shards.DEFAULT_SHARD_BYTES
    strict: bool = False
    force: bool = False
    progress: bool = True

    def key_fields(self) -> dict:
        """The options that change the bytes written (the output path and display flags do not)."""
        return {
            "split": self.split,
            "seed": self.seed,
            "max_seq_len": self.max_seq_len,
            "max_prompt_len": self.max_prompt_len,
            "eos_token": self.eos_token,
            "shard_bytes": self.shard_bytes,
        }


@dataclass
class Result:
    manifest: dict
    reused: bool
    out: Path


@dataclass
class _Part:
    """One dataset's rows for one phase and side, in DeepSpeed-Chat's order."""

    rows_in: int
    encoded: pa.Table
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0


def prepare(opts: PrepareOptions, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Result:
    started = time.perf_counter()
    _check_options(opts)
    weights = parse_split(opts.split)
    wanted = [p for p, w in zip(PHASES, weights) if w > 0]

    datasets = _resolve_all(opts)
    tokenizer = load_tokenizer(opts.tokenizer, eos_token=opts.eos_token)
    inputs = [mf.describe_inputs(d) for d in datasets]
    key = mf.cache_key(inputs, tokenizer, opts.key_fields())
    if not opts.force and mf.is_complete(opts.out, key):
        return Result(mf.read(opts.out), reused=True, out=opts.out)

    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        with locking.exclusive(opts.out, on_wait=log):
            if not opts.force and mf.is_complete(opts.out, key):  # another process built it meanwhile
                return Result(mf.read(opts.out), reused=True, out=opts.out)
            for stale in opts.out.glob(".staging-*"):  # left by a killed run; safe to remove under the lock
                shutil.rmtree(stale, ignore_errors=True)
            staging = opts.out / f".staging-{uuid.uuid4().hex[:12]}"
            staging.mkdir()
            try:
                manifest = _build(opts, datasets, inputs, tokenizer, key, wanted, staging)
                manifest = mf.finish(manifest, {"created": _now(), "seconds": round(time.perf_counter() - started, 2)})
                mf.commit(staging, opts.out, manifest, OUTPUT_DIRS)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise DataprepError(_write_error(opts.out, exc)) from None
    return Result(manifest, reused=False, out=opts.out)


def _write_error(out: Path, exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"--out {out}: no space left on device{where}; free some space or choose another --out (the previous output, if any, is unchanged)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"--out {out}: not writable{where}: {exc.strerror}; choose another --out"
    return f"--out {out}: cannot write{where}: {exc.strerror or exc}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _check_options(opts: PrepareOptions) -> None:
    if not 0 <= opts.seed < 2**32:
        raise DataprepError(f"--seed {opts.seed}: must be an integer in [0, 2**32) (numpy RandomState)")
    if opts.max_seq_len < 2:
        raise DataprepError(f"--max-seq-len {opts.max_seq_len}: must be at least 2")
    if opts.max_prompt_len < 1:
        raise DataprepError(f"--max-prompt-len {opts.max_prompt_len}: must be at least 1")
    if opts.out.exists() and not opts.out.is_dir():
        raise DataprepError(f"--out {opts.out}: exists and is not a directory")


def _resolve_all(opts: PrepareOptions) -> list[Dataset]:
    if not opts.data:
        raise DataprepError("--data: give at least one dataset (hh, or a file or directory)")
    datasets, seen = [], set()
    for spec in opts.data:
        d = resolve(spec, opts.data_dir, opts.revision)
        name, n = d.name, 2
        while name in seen:  # two inputs with the same base name get distinct table names
            name, n = f"{d.name}-{n}", n + 1
        seen.add(name)
        datasets.append(Dataset(name, d.files, d.origin, d.revision, d.adapter))
    return datasets


def _build(opts, datasets, inputs, tokenizer: Tokenizer, key, wanted, staging: Path) -> dict:
    for sub in ["normalized", "dropped"] + [f"phase{p}" for p in wanted]:
        (staging / sub).mkdir()
    parts: dict[tuple[int, str], list[_Part]] = {(p, s): [] for p in wanted for s in SIDES}
    for dataset, described in zip(datasets, inputs):
        pools = _read_pools(dataset, described, opts)
        dropped_tables = []
        normalized = []
        for side, pool in pools.items():
            phase_index = _split_side(dataset.name, side, len(pool), wanted, described, opts)
            phase_of = np.zeros(len(pool), dtype=np.int8)
            for p, ix in zip(PHASES, phase_index):
                phase_of[ix] = p
            pool = pool.append_column("side", pa.array([side] * len(pool), pa.string()))
            pool = pool.append_column("phase", pa.array(phase_of))
            kept_mask = pc.is_null(pool.column("drop_reason"))
            normalized.append(pool.filter(kept_mask).drop_columns(["drop_reason"]))
            dropped_tables.append(_dropped_rows(pool.filter(pc.invert(kept_mask))))
            for p, ix in zip(PHASES, phase_index):
                if p in wanted:
                    part, phase_drops = _encode_part(p, side, dataset.name, pool.take(ix), tokenizer, opts)
                    parts[(p, side)].append(part)
                    if phase_drops is not None:
                        dropped_tables.append(phase_drops)
        shards.write_arrow(staging / "normalized" / f"{dataset.name}.arrow", pa.concat_tables(normalized))
        shards.write_arrow(staging / "dropped" / f"{dataset.name}.arrow", pa.concat_tables(dropped_tables))
        faults.checkpoint("normalized")

    phases = {}
    for (p, side), dataset_parts in parts.items():
        phases.setdefault(str(p), {})[side] = _write_phase(p, side, dataset_parts, datasets, tokenizer, opts, staging)
    return {
        "format_version": FORMAT_VERSION,
        "dataprep_version": __version__,
        "cache_key": key,
        "options": {"data": opts.data, "data_dir": opts.data_dir and str(opts.data_dir), "revision": opts.revision,
                    "tokenizer": opts.tokenizer, **opts.key_fields()},
        "tokenizer": tokenizer.describe(),
        "libraries": mf.libraries(),
        "inputs": inputs,
        "phases": phases,
        "tables": {sub: [_file_record(staging, p) for p in sorted((staging / sub).glob("*.arrow"))] for sub in ("normalized", "dropped")},
    }


def _file_record(root: Path, path: Path) -> dict:
    """What the manifest vouches for about one written file."""
    rows = pa.ipc.open_file(pa.memory_map(str(path))).read_all().num_rows  # memory-mapped: no copy
    return {"file": path.relative_to(root).as_posix(), "rows": rows, "bytes": path.stat().st_size, "sha256": shards.file_sha256(path)}


def _split_side(name: str, side: str, size: int, wanted: list[int], described: dict, opts: PrepareOptions) -> list[np.ndarray]:
    """DeepSpeed-Chat's split of one side; a phase we build must not come out empty."""
    phase_index = split_indices(opts.seed, opts.split, size)
    for p, ix in zip(PHASES, phase_index):
        if p in wanted and len(ix) == 0:
            raise DataprepError(
                f"{name}: --split {opts.split} leaves phase {p} with no {side} rows out of {size}; "
                "add rows or change the split (0 for a phase you do not want)"
            )
    described["split"][side] = [len(ix) for ix in phase_index]
    described["unused_rows"][side] = int(sum(len(ix) for p, ix in zip(PHASES, phase_index) if p not in wanted))
    return phase_index


def _read_pools(dataset: Dataset, described: dict, opts: PrepareOptions) -> dict[str, pa.Table]:
    """Normalize every file and pool each side (files in path order; position = DeepSpeed-Chat index)."""
    by_side: dict[str, list[pa.Table]] = {s: [] for s in SIDES}
    bar = tqdm(total=len(dataset.files), desc=f"read {dataset.name}", unit="file", disable=None if opts.progress else True)
    for file, record in zip(dataset.files, described["files"]):
        table, adapter = read_canonical(dataset, file, strict=opts.strict)
        record["adapter"] = adapter
        record["rows"] = len(table)
        record["dropped"] = _count(table.column("drop_reason"))
        table = table.add_column(0, "source", pa.array([file.source] * len(table), pa.string()))
        table = table.add_column(0, "row_id", pa.array(np.arange(len(table), dtype=np.int64)))
        by_side[file.side].append(table)
        bar.update()
    bar.close()
    pools = {s: pa.concat_tables(t) for s, t in by_side.items() if t and sum(len(x) for x in t)}
    described["rows"] = {s: len(t) for s, t in pools.items()}
    if not pools:
        raise DataprepError(f"{dataset.name}: its files hold no rows")
    if len(pools) == 1:
        # Like DeepSpeed-Chat's train-only datasets: carve the one side 9:1 into train and eval first.
        (only, pool), = pools.items()
        train_ix, eval_ix = split_indices(opts.seed, CARVE_SPLIT, len(pool), parts=2)
        if len(eval_ix) == 0 or len(train_ix) == 0:
            raise DataprepError(
                f"{dataset.name}: only {len(pool)} {only} rows and no other side; the {CARVE_SPLIT} train/eval carve "
                "leaves one side empty; add rows or a *test* file"
            )
        described["carve"] = {"from": only, "split": CARVE_SPLIT, "train": len(train_ix), "eval": len(eval_ix)}
        pools = {"train": pool.take(train_ix), "eval": pool.take(eval_ix)}
    return pools


def _encode_part(phase: int, side: str, name: str, rows: pa.Table, tokenizer, opts) -> tuple[_Part, pa.Table | None]:
    """Tokenize one dataset's rows of one phase and side; rows dropped by normalization are counted."""
    reasons = rows.column("drop_reason")
    dropped = _count(reasons)
    kept = rows.filter(pc.is_null(reasons))
    tables, phase_drops, truncated = [], [], 0
    bar = tqdm(total=len(kept), desc=f"phase {phase} {side} {name}", unit="row", disable=None if opts.progress else True)
    for start in range(0, len(kept), ENCODE_CHUNK):
        chunk = kept.slice(start, ENCODE_CHUNK)
        enc = encode_phase(phase, tokenizer, chunk, opts.max_seq_len, opts.max_prompt_len)
        tables.append(enc.table)
        truncated += enc.truncated
        for i, reason in enc.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + 1
            phase_drops.append((start + i, reason))
        bar.update(len(chunk))
    bar.close()
    encoded = pa.concat_tables(tables) if tables else phase_schema(phase).empty_table()
    drops_table = None
    if phase_drops:
        index, why = zip(*phase_drops)
        drops_table = _dropped_rows(kept.take(list(index)), reasons=list(why))
    return _Part(len(rows), encoded, dict(sorted(dropped.items())), truncated), drops_table


def _write_phase(phase, side, parts: list[_Part], datasets, tokenizer, opts, staging: Path) -> dict:
    table = pa.concat_tables([p.encoded for p in parts])
    if len(parts) > 1:
        # Blending, as DeepSpeed-Chat: concatenate the datasets' parts, then one seeded shuffle.
        table = table.take(shuffle_index(opts.seed, len(table)))
    dropped: dict[str, int] = {}
    for part in parts:
        for reason, n in part.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    if len(table) == 0:
        raise DataprepError(
            f"phase {phase} {side}: no rows left after drops ({_fmt(dropped)}); "
            "use more data, a longer --max-seq-len/--max-prompt-len, or weight 0 for this phase"
        )
    first = TOKEN_COLUMNS[phase][0]
    lengths = pc.list_value_length(table.column(first)).to_numpy(zero_copy_only=False)
    if phase == 2:
        lengths = lengths + pc.list_value_length(table.column("rejected_input_ids")).to_numpy(zero_copy_only=False)
    ranges = shards.plan_shards(lengths.tolist(), opts.shard_bytes)
    meta = {
        "format_version": FORMAT_VERSION,
        "phase": phase,
        "side": side,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "eos_id": tokenizer.eos_id,
        "bos_id": tokenizer.bos_id,
        "pad_id": tokenizer.pad_id,
        "max_seq_len": opts.max_seq_len,
        "max_prompt_len": opts.max_prompt_len,
    }
    written = []
    for i, (start, stop) in enumerate(ranges):
        name = shards.shard_name(side, i, len(ranges))
        path = staging / f"phase{phase}" / name
        shards.write_arrow(path, table.slice(start, stop - start), {**meta, "shard": i, "num_shards": len(ranges)})
        written.append(_file_record(staging, path))
        faults.checkpoint("shard")
    return {
        "rows_in": sum(p.rows_in for p in parts),
        "kept": len(table),
        "dropped": dict(sorted(dropped.items())),
        "truncated": sum(p.truncated for p in parts),
        "by_dataset": {d.name: {"rows_in": p.rows_in, "kept": len(p.encoded), "dropped": p.dropped} for d, p in zip(datasets, parts)},
        "tokens": {col: length_stats(table, col) for col in TOKEN_COLUMNS[phase]},
        "shards": written,
    }


def _dropped_rows(rows: pa.Table, reasons: list[str] | None = None) -> pa.Table:
    """The dropped/ table layout: which row, where it was headed, why, and its text."""
    reason = pa.array(reasons, pa.string()) if reasons is not None else rows.column("drop_reason")
    return pa.table(
        {
            "row_id": rows.column("row_id"),
            "source": rows.column("source"),
            "side": rows.column("side"),
            "phase": rows.column("phase"),
            "reason": reason,
            "prompt": rows.column("prompt"),
            "chosen": rows.column("chosen"),
            "rejected": rows.column("rejected"),
        }
    )


def _count(reasons: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(reasons)).to_pylist() if len(reasons) else []
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none dropped"
