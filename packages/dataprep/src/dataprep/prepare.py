"""`dataprep prepare`: inputs -> normalized tables -> DeepSpeed-Chat split -> per-phase token shards.

The pipeline, top to bottom:
  1. resolve every --data argument to files, load the tokenizer, compute the cache key;
     an up-to-date output with the same key is reused;
  2. per dataset (pool.py): stream each file through its adapter into a memory-mapped pool file
     (drops counted by reason), carve 9,1 when there is only one side, split each side by --split;
     write normalized/ and the parse-time part of dropped/;
  3. per phase and side: take each dataset's part from its pool in DeepSpeed-Chat's order, chunk by
     chunk, tokenize, blend the datasets (concatenate, then a seeded shuffle, as DeepSpeed-Chat does)
     and stream the rows into shards;
  4. write the manifest, then move everything into place.
Memory stays bounded: text and tokens move through in chunks; only per-row index arrays are whole.
Everything is built in a staging directory inside --out; the manifest is written last, so an output
without a manifest (or with an old one) is never mistaken for a finished build.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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
from dataprep.phases import PHASES, TOKEN_COLUMNS, encode_phase, length_stats, phase_schema, token_lengths, token_type
from dataprep.pool import DROPPED_SCHEMA, POOL_BATCH_ROWS, POOL_SCHEMA, Pool, build_pool, count_reasons, dropped_rows
from dataprep.sources import SIDES, Dataset, resolve
from dataprep.split import parse_split, shuffle_index
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
    workers: int | None = None  # tokenizer threads; None = all cores
    strict: bool = False
    force: bool = False
    progress: bool = True
    # Adapter options (issue 3): user column mapping, chat-message rendering, SHP card filters.
    columns: dict[str, str] | None = None  # canonical name -> the user's column, from --columns
    template: str = "hh"  # "hh" (Human/Assistant text) | "chat" (the tokenizer's chat template)
    shp_min_score_ratio: float | None = None
    shp_max_pairs_per_post: int | None = None
    # Blending options (issue 3).
    sft_only_data: list[str] = field(default_factory=list)  # phase 1 only, DeepSpeed-Chat's sft_only_data_path
    split_by: str = "row"  # "row" (DeepSpeed-Chat) | "prompt" (rows sharing a prompt/group stay together)
    # Unsupervised (PTX) blocks for phase 3 (issue 5).
    unsup: list[str] = field(default_factory=list)
    unsup_block: int = 512

    def key_fields(self) -> dict:
        """The options that change the bytes written (the output path and display flags do not)."""
        return {
            "split": self.split,
            "seed": self.seed,
            "max_seq_len": self.max_seq_len,
            "max_prompt_len": self.max_prompt_len,
            "eos_token": self.eos_token,
            "shard_bytes": self.shard_bytes,
            "columns": self.columns,
            "template": self.template,
            "shp_min_score_ratio": self.shp_min_score_ratio,
            "shp_max_pairs_per_post": self.shp_max_pairs_per_post,
            "sft_only_data": self.sft_only_data,
            "split_by": self.split_by,
            "unsup": self.unsup,
            "unsup_block": self.unsup_block,
        }


@dataclass
class Result:
    manifest: dict
    reused: bool
    out: Path


def prepare(opts: PrepareOptions, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Result:
    started = time.perf_counter()
    _check_options(opts)
    weights = parse_split(opts.split)
    wanted = [p for p, w in zip(PHASES, weights) if w > 0]

    datasets = _resolve_all(opts)
    tokenizer = load_tokenizer(opts.tokenizer, eos_token=opts.eos_token, workers=opts.workers)
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
    pools, dropped, tables = [], [], []
    for dataset, described in zip(datasets, inputs):
        pool = build_pool(dataset, described, wanted, staging, opts)
        # Text tables for auditing, zstd-compressed (they are read whole, never memory-mapped row by row).
        normalized = shards.ArrowFile(staging / "normalized" / f"{dataset.name}.arrow", _normalized_schema(), compression="zstd")
        drops = shards.ArrowFile(staging / "dropped" / f"{dataset.name}.arrow", DROPPED_SCHEMA, compression="zstd")
        for kept, dropped_here in pool.tables():
            normalized.write(kept)
            drops.write(dropped_here)
        tables.append(_file_record(staging, normalized.close(), normalized.rows))
        pools.append(pool)
        dropped.append(drops)
        faults.checkpoint("normalized")
    phases = {}
    for phase in wanted:
        for side in SIDES:
            phases.setdefault(str(phase), {})[side] = _build_phase(phase, side, pools, dropped, tokenizer, opts, staging)
    for drops in dropped:
        tables.append(_file_record(staging, drops.close(), drops.rows))
    return {
        "format_version": FORMAT_VERSION,
        "dataprep_version": __version__,
        "cache_key": key,
        "options": {"data": opts.data, "data_dir": opts.data_dir and str(opts.data_dir), "revision": opts.revision,
                    "tokenizer": opts.tokenizer, **opts.key_fields()},
        "tokenizer": {**tokenizer.describe(), "token_type": str(token_type(tokenizer.vocab_size))},
        "libraries": mf.libraries(),
        "inputs": inputs,
        "phases": phases,
        "tables": {sub: sorted((t for t in tables if t["file"].startswith(sub + "/")), key=lambda t: t["file"]) for sub in ("normalized", "dropped")},
    }


def _normalized_schema() -> pa.Schema:
    names = [n for n in POOL_SCHEMA.names if n != "drop_reason"]
    return pa.schema([POOL_SCHEMA.field(n) for n in names] + [("side", pa.string()), ("phase", pa.int8())])


def _build_phase(phase: int, side: str, pools: list[Pool], dropped: list, tokenizer: Tokenizer, opts, staging: Path) -> dict:
    """Tokenize every dataset's part of one phase and side, blend, and stream the rows into shards."""
    ids = token_type(tokenizer.vocab_size)
    meta = {"format_version": FORMAT_VERSION, "phase": phase, "side": side, "tokenizer_fingerprint": tokenizer.fingerprint,
            "eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id, "pad_id": tokenizer.pad_id,
            "max_seq_len": opts.max_seq_len, "max_prompt_len": opts.max_prompt_len}
    writer = shards.ShardWriter(staging / f"phase{phase}", side, phase_schema(phase, ids), meta, opts.shard_bytes)
    # Several datasets: each one's tokenized part goes to one staging file, shuffled together at the end.
    blend = shards.ArrowFile(staging / f".blend-{phase}-{side}.arrow", phase_schema(phase, ids), rows_per_batch=POOL_BATCH_ROWS) if len(pools) > 1 else None
    sink = blend or writer
    by_dataset, lengths, truncated = {}, {c: [] for c in TOKEN_COLUMNS[phase]}, 0
    total = sum(len(pool.parts[side][phase - 1]) for pool in pools)
    bar = tqdm(total=total, desc=f"phase {phase} {side}", unit="row", disable=None if opts.progress else True)
    for pool, drops in zip(pools, dropped):
        index = pool.parts[side][phase - 1]
        counts: dict[str, int] = {}
        kept = 0
        def encode(chunk: np.ndarray, pool=pool):
            rows = pool.take(chunk)
            reasons = count_reasons(rows.column("drop_reason"))
            rows = rows.filter(pc.is_null(rows.column("drop_reason")))
            return len(chunk), reasons, rows, encode_phase(phase, tokenizer, rows, opts.max_seq_len, opts.max_prompt_len)

        chunks = (index[start : start + ENCODE_CHUNK] for start in range(0, len(index), ENCODE_CHUNK))
        for n, reasons, rows, enc in _in_order(encode, chunks):
            _add(counts, reasons)
            if enc.dropped:
                positions, why = zip(*enc.dropped.items())
                annotated = rows.take(list(positions))
                annotated = annotated.append_column("side", pa.array([side] * len(positions), pa.string()))
                annotated = annotated.append_column("phase", pa.array([phase] * len(positions), pa.int8()))
                drops.write(dropped_rows(annotated, list(why)))
                _add(counts, {r: why.count(r) for r in set(why)})
            for column in lengths:
                lengths[column].append(token_lengths(enc.table.column(column)))
            sink.write(enc.table)
            truncated += enc.truncated
            kept += enc.table.num_rows
            bar.update(n)
        by_dataset[pool.name] = {"rows_in": len(index), "kept": kept, "dropped": dict(sorted(counts.items()))}
    bar.close()
    if blend:
        # Blending, as DeepSpeed-Chat: concatenate the datasets' parts, then one shuffle with the seed.
        path, rows = blend.close(), blend.rows
        order = shuffle_index(opts.seed, rows)
        starts = shards.batch_starts(rows, POOL_BATCH_ROWS)
        for start in range(0, len(order), ENCODE_CHUNK):
            writer.write(shards.take_rows(path, starts, order[start : start + ENCODE_CHUNK], phase_schema(phase, ids)))
        path.unlink()
    dropped_total: dict[str, int] = {}
    for info in by_dataset.values():
        _add(dropped_total, info["dropped"])
    kept_total = sum(info["kept"] for info in by_dataset.values())
    if kept_total == 0:
        raise DataprepError(
            f"phase {phase} {side}: no rows left after drops ({_fmt(dropped_total)}); "
            "use more data, a longer --max-seq-len/--max-prompt-len, or weight 0 for this phase"
        )
    paths = writer.close()
    faults.checkpoint("shard")
    return {
        "rows_in": sum(info["rows_in"] for info in by_dataset.values()),
        "kept": kept_total,
        "dropped": dict(sorted(dropped_total.items())),
        "truncated": truncated,
        "by_dataset": by_dataset,
        "tokens": {c: length_stats(np.concatenate(v)) for c, v in lengths.items()},
        "shards": [_file_record(staging, p, n) for p, n in zip(paths, writer.rows)],
    }


def _in_order(fn, items, depth: int = 2):
    """fn over items on `depth` threads, results in input order, at most `depth` in flight. The
    tokenizer releases the GIL, so one chunk's Rust encoding overlaps the next chunk's Python work;
    results are consumed in order, so the output does not depend on the timing."""
    with ThreadPoolExecutor(depth) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _file_record(root: Path, path: Path, rows: int) -> dict:
    """What the manifest vouches for about one written file."""
    return {"file": path.relative_to(root).as_posix(), "rows": rows, "bytes": path.stat().st_size, "sha256": shards.file_sha256(path)}


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for reason, n in counts.items():
        total[reason] = total.get(reason, 0) + n


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none dropped"
