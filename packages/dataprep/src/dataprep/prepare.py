"""`dataprep prepare`: inputs -> normalized tables -> DeepSpeed-Chat split -> per-phase token shards.

The pipeline, top to bottom:
  1. resolve every --data argument to files, load the tokenizer, compute the cache key;
     an up-to-date output with the same key is reused;
  2. per dataset (pool.py): stream each file through its adapter into a memory-mapped pool file
     (drops counted by reason), carve 9,1 when there is only one side, split each side by --split;
     write normalized/ and the parse-time part of dropped/;
  3. per phase and side: take each dataset's part from its pool in DeepSpeed-Chat's order, chunk by
     chunk, tokenize, blend the datasets (concatenate, then a seeded shuffle, as DeepSpeed-Chat does;
     weighted quotas and SFT-only data in blend.py)
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dataprep import FORMAT_VERSION, __version__, blend, faults, grouping, locking, manifest as mf, memory, shards, unsup
from dataprep.errors import DataprepError
from dataprep.phases import PHASES, TOKEN_COLUMNS, encode_phase, length_stats, phase_schema, token_lengths, token_type
from dataprep.pool import DROPPED_SCHEMA, POOL_BATCH_ROWS, POOL_SCHEMA, Pool, build_pool, count_reasons, dropped_rows
from dataprep.sources import SIDES, Dataset, resolve
from dataprep.sources.options import AdapterOptions, from_prepare as adapter_options
from dataprep.split import parse_split
from dataprep.tokenizer import Tokenizer, load_tokenizer

ENCODE_CHUNK = 1024  # rows per tokenizer call: large enough for the Rust thread pool, small for progress
TEXT_BATCH_ROWS = 1024  # rows per record batch of normalized/ and dropped/ (large text rows; a batch is buffered)
TRIM_EVERY = 4  # chunks between returns of freed heap memory to the system (memory.py)
SFT_ONLY_SPLIT = "10,0,0"  # DeepSpeed-Chat's split for sft_only_data_path: all of each side to phase 1
OUTPUT_DIRS = ("phase1", "phase2", "phase3", unsup.PART, "normalized", "dropped")  # commit order


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
    # Set by prepare() from the options above and the tokenizer (its chat template); not an option itself.
    adapters: AdapterOptions | None = field(default=None, repr=False)
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
            # The template's text decides the rendered rows: a changed template must rebuild.
            **({"chat_template_sha256": self.adapters.chat_template_sha256} if self.adapters and self.adapters.chat_template else {}),
            "shp_min_score_ratio": self.shp_min_score_ratio,
            "shp_max_pairs_per_post": self.shp_max_pairs_per_post,
            "sft_only_data": self.sft_only_data,
            "split_by": self.split_by,
            # The datasets' contents are keyed through the inputs; their --data weights only here.
            "data_weights": _weights_key(self.data),
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
    opts = replace(opts, adapters=adapter_options(opts, tokenizer, datasets))
    inputs = [{**mf.describe_inputs(d), "role": role} for d, role in zip(datasets, _roles(opts))]
    unsup_sets = unsup.resolve(opts.unsup)
    unsup_inputs = [{**mf.describe_inputs(d), "role": "unsup"} for d in unsup_sets]
    key = mf.cache_key(inputs + unsup_inputs, tokenizer, opts.key_fields())
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
                if unsup_sets:
                    manifest["unsup"] = _build_unsup(opts, unsup_sets, unsup_inputs, tokenizer, staging)
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
    if opts.unsup_block < 2:
        raise DataprepError(f"--unsup-block {opts.unsup_block}: must be at least 2 tokens")
    if opts.out.exists() and not opts.out.is_dir():
        raise DataprepError(f"--out {opts.out}: exists and is not a directory")
    if opts.split_by not in ("row", "prompt"):
        raise DataprepError(f"--split-by {opts.split_by}: expected row or prompt")
    if opts.sft_only_data and parse_split(opts.split)[0] == 0:
        raise DataprepError(f"--sft-only-data feeds phase 1 only, but --split {opts.split} builds no phase 1; drop it or give phase 1 a weight")


def _weights_key(data: list[str]) -> list[float] | None:
    weights = blend.parse_data(data)[1]
    return None if weights is None else [float(w) for w in weights]


def _resolve_all(opts: PrepareOptions) -> list[Dataset]:
    if not opts.data:
        raise DataprepError("--data: give at least one dataset (hh, or a file or directory)")
    blend.check_sft_only(opts.sft_only_data)
    datasets, seen = [], set()
    for spec in blend.parse_data(opts.data)[0] + opts.sft_only_data:  # --data first: _roles relies on it
        d = resolve(spec, opts.data_dir, opts.revision)
        name, n = d.name, 2
        while name in seen:  # two inputs with the same base name get distinct table names
            name, n = f"{d.name}-{n}", n + 1
        seen.add(name)
        datasets.append(Dataset(name, d.files, d.origin, d.revision, d.adapter))
    return datasets


def _roles(opts: PrepareOptions) -> list[str]:
    """Each resolved dataset's role, in _resolve_all's order: --data, then --sft-only-data (phase 1 only)."""
    return ["data"] * len(opts.data) + ["sft_only"] * len(opts.sft_only_data)


def _build(opts, datasets, inputs, tokenizer: Tokenizer, key, wanted, staging: Path) -> dict:
    for sub in ["normalized", "dropped"] + [f"phase{p}" for p in wanted]:
        (staging / sub).mkdir()
    pools, dropped, tables = [], [], []
    pins = grouping.Pins() if opts.split_by == "prompt" else None  # groups placed so far, across datasets
    for dataset, described in zip(datasets, inputs):
        sft_only = described["role"] == "sft_only"  # split 10,0,0: all of each side to phase 1
        pool = build_pool(dataset, described, [1] if sft_only else wanted, staging,
                          replace(opts, split=SFT_ONLY_SPLIT) if sft_only else opts, pins)
        # Text tables for auditing, zstd-compressed (they are read whole, never memory-mapped row by row).
        normalized = shards.ArrowFile(staging / "normalized" / f"{dataset.name}.arrow", _normalized_schema(), TEXT_BATCH_ROWS, "zstd")
        drops = shards.ArrowFile(staging / "dropped" / f"{dataset.name}.arrow", DROPPED_SCHEMA, TEXT_BATCH_ROWS, "zstd")
        for kept, dropped_here in pool.tables():
            normalized.write(kept)
            drops.write(dropped_here)
        tables.append(_file_record(staging, normalized.close(), normalized.rows))
        pools.append(pool)
        dropped.append(drops)
        faults.checkpoint("normalized")
    phases = {}
    mix = blend.Mix(blend.parse_data(opts.data)[1], main=len(opts.data))
    for phase in wanted:
        members = _members(inputs, phase)
        for side in SIDES:
            phases.setdefault(str(phase), {})[side] = _build_phase(
                phase, side, [pools[i] for i in members], [dropped[i] for i in members], tokenizer, opts, staging, mix)
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
        "prompt_overlap": _prompt_overlap(pools, inputs, wanted, opts.split_by),
        "tables": {sub: sorted((t for t in tables if t["file"].startswith(sub + "/")), key=lambda t: t["file"]) for sub in ("normalized", "dropped")},
    }


def _shard_meta(tokenizer: Tokenizer, **extra) -> dict:
    """What every shard's schema metadata says about itself (shards.METADATA_KEY)."""
    return {"format_version": FORMAT_VERSION, "tokenizer_fingerprint": tokenizer.fingerprint, "eos_id": tokenizer.eos_id,
            "bos_id": tokenizer.bos_id, "pad_id": tokenizer.pad_id, **extra}


def _build_unsup(opts, datasets: list[Dataset], inputs: list[dict], tokenizer: Tokenizer, staging: Path) -> dict:
    """Phase 3's unsupervised (PTX) blocks, from --unsup (see unsup.py)."""
    (staging / unsup.PART).mkdir()
    built = unsup.build(datasets, tokenizer, opts.unsup_block, staging / unsup.PART, _shard_meta(tokenizer), opts.shard_bytes, opts.strict)
    paths, rows = built.pop("paths"), built.pop("rows")
    faults.checkpoint("shard")
    return {"inputs": inputs, **built, "shards": [_file_record(staging, p, n) for p, n in zip(paths, rows)]}


def _normalized_schema() -> pa.Schema:
    names = [n for n in POOL_SCHEMA.names if n != "drop_reason"]
    return pa.schema([POOL_SCHEMA.field(n) for n in names] + [("side", pa.string()), ("phase", pa.int8())])


def _build_phase(phase: int, side: str, pools: list[Pool], dropped: list, tokenizer: Tokenizer, opts, staging: Path,
                 mix: blend.Mix) -> dict:
    """Tokenize every dataset's part of one phase and side, blend, and stream the rows into shards."""
    ids = token_type(tokenizer.vocab_size)
    schema = phase_schema(phase, ids)
    meta = _shard_meta(tokenizer, phase=phase, side=side, max_seq_len=opts.max_seq_len, max_prompt_len=opts.max_prompt_len)
    writer = shards.ShardWriter(staging / f"phase{phase}", side, schema, meta, opts.shard_bytes)
    lengths = {c: [] for c in TOKEN_COLUMNS[phase]}

    def emit(table: pa.Table) -> None:  # token lengths of what the shards hold, repeats included
        for column in lengths:
            lengths[column].append(token_lengths(table.column(column)))
        writer.write(table)

    # Several datasets, or weights: each part goes to one staging file, blended at the end (blend.py).
    staged = None
    if len(pools) > 1 or mix.weights is not None:
        staged = shards.ArrowFile(staging / f".blend-{phase}-{side}.arrow", schema, rows_per_batch=POOL_BATCH_ROWS)
    by_dataset, kept_at, truncated = {}, [], 0
    total = sum(len(pool.parts[side][phase - 1]) for pool in pools)
    bar = tqdm(total=total, desc=f"phase {phase} {side}", unit="row", disable=None if opts.progress else True)
    for pool, drops in zip(pools, dropped):
        info, positions, n_truncated = _tokenize_part(phase, side, pool, drops, tokenizer, opts, staged.write if staged else emit, bar)
        by_dataset[pool.name] = info
        kept_at.append(positions)
        truncated += n_truncated
    bar.close()
    if staged:
        _blend(phase, side, staged, pools, dropped, kept_at, by_dataset, schema, emit, opts, mix)
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
        "repeated": sum(info.get("repeated", 0) for info in by_dataset.values()),  # rows_in + repeated = kept + dropped
        "truncated": truncated,
        "by_dataset": by_dataset,
        "tokens": {c: length_stats(np.concatenate(v)) for c, v in lengths.items()},
        "shards": [_file_record(staging, p, n) for p, n in zip(paths, writer.rows)],
    }


def _tokenize_part(phase: int, side: str, pool: Pool, drops: shards.ArrowFile, tokenizer: Tokenizer, opts,
                   sink: Callable[[pa.Table], None], bar) -> tuple[dict, np.ndarray, int]:
    """One dataset's part of a phase and side, tokenized chunk by chunk into `sink`, its drops written to
    `drops`. Returns its counts, the pool positions of the rows it kept (in sink order), and how many
    of those were truncated."""
    index = pool.parts[side][phase - 1]
    counts: dict[str, int] = {}
    kept: list[np.ndarray] = []
    truncated = 0

    def encode(chunk: np.ndarray):
        rows = pool.take(chunk)
        reasons = count_reasons(rows.column("drop_reason"))
        parsed = pc.is_null(rows.column("drop_reason"))
        positions = chunk[parsed.to_numpy(zero_copy_only=False)]
        rows = rows.filter(parsed)
        return len(chunk), reasons, rows, positions, encode_phase(phase, tokenizer, rows, opts.max_seq_len, opts.max_prompt_len)

    chunks = (index[start : start + ENCODE_CHUNK] for start in range(0, len(index), ENCODE_CHUNK))
    for done, (n, reasons, rows, positions, enc) in enumerate(_in_order(encode, chunks), 1):
        if done % TRIM_EVERY == 0:
            memory.release()
        _add(counts, reasons)
        if enc.dropped:
            where, why = list(enc.dropped), list(enc.dropped.values())
            _write_drops(drops, rows.take(where), side, phase, why)
            _add(counts, {r: why.count(r) for r in set(why)})
            positions = np.delete(positions, where)
        sink(enc.table)
        kept.append(positions)
        truncated += enc.truncated
        bar.update(n)
    positions = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return {"rows_in": len(index), "kept": len(positions), "dropped": dict(sorted(counts.items()))}, positions, truncated


def _blend(phase: int, side: str, staged: shards.ArrowFile, pools: list[Pool], dropped: list, kept_at: list[np.ndarray],
           by_dataset: dict, schema: pa.Schema, emit: Callable[[pa.Table], None], opts, mix: blend.Mix) -> None:
    """Stream the staged parts into the shards in the blend's order (blend.plan). When weighted, each
    dataset's record gets its quota; rows left out are dropped as `over_quota` (and written to
    dropped/), repeats are counted as `repeated`."""
    path, rows = staged.close(), staged.rows
    names = [pool.name for pool in pools]
    plan = blend.plan(opts.seed, phase, side, names, [len(k) for k in kept_at], mix)
    starts = shards.batch_starts(rows, POOL_BATCH_ROWS)
    for start in range(0, len(plan.order), ENCODE_CHUNK):
        emit(shards.take_rows(path, starts, plan.order[start : start + ENCODE_CHUNK], schema))
    path.unlink()
    for i, record in enumerate(plan.records or []):
        info = by_dataset[names[i]]
        info.update(kept=record["quota"], repeated=record["repeated"], blend=record)
        if record["left_out"]:
            info["dropped"] = dict(sorted({**info["dropped"], "over_quota": record["left_out"]}.items()))
            left = kept_at[i][plan.left_out[i]]
            for start in range(0, len(left), ENCODE_CHUNK):
                chunk = pools[i].take(left[start : start + ENCODE_CHUNK])
                _write_drops(dropped[i], chunk, side, phase, ["over_quota"] * chunk.num_rows)


def _write_drops(drops: shards.ArrowFile, rows: pa.Table, side: str, phase: int, reasons: list[str]) -> None:
    """Phase-level drops into dropped/: the pool rows, where they were headed, and why."""
    rows = rows.append_column("side", pa.array([side] * rows.num_rows, pa.string()))
    rows = rows.append_column("phase", pa.array([phase] * rows.num_rows, pa.int8()))
    drops.write(dropped_rows(rows, reasons))


def _members(inputs: list[dict], phase: int) -> list[int]:
    """The datasets a phase blends: every --data dataset, and in phase 1 the --sft-only-data ones too."""
    return [i for i, d in enumerate(inputs) if d.get("role") == "data" or (phase == 1 and d.get("role") == "sft_only")]


def _prompt_overlap(pools: list[Pool], inputs: list[dict], wanted: list[int], split_by: str) -> dict:
    """Distinct prompts (groups) shared between phases and between train and eval, over the rows each
    built part receives after parsing; zero with --split-by prompt, DeepSpeed-Chat's leak without."""
    cells = []
    for pool, described in zip(pools, inputs):
        used = [1] if described.get("role") == "sft_only" else wanted
        rows = pool.parsed & np.isin(pool.phase_of, used)
        cells.append((pool.keys[rows], pool.side_of[rows], pool.phase_of[rows]))
    return {"split_by": split_by, **grouping.prompt_overlap(cells, wanted)}


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
