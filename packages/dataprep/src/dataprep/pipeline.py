"""`dataprep prepare`: the pipeline, one stage after the other, each passing one typed value forward.

  1. resolve   (inputs.py)  options, split and weights parsed once, input files hashed, the tokenizer,
                            the cache key                                        -> Inputs
  2. normalize (pool.py)    each dataset's files through its adapter into a pool  -> Pool per dataset
 2b. screen    (screen.py)  duplicates and contaminated rows marked in the pools   -> Pool, with Screened
  3. plan      (plan.py)    DeepSpeed-Chat's split, by row or by prompt group     -> SplitPlan
  4. tokenize  (phases.py)  each phase part, chunk by chunk, in the split's order -> Chunks (streamed)
  5. write     (write.py)   blended into shards; normalized/ and dropped/         -> PartResult per part
  6. seal      (manifest.py) the manifest, its content hash, the commit into place

An up-to-date output with the same cache key is reused. Everything is built in a staging directory
inside --out under a lock; the manifest is written last, so an output without a manifest (or with an
old one) is never mistaken for a finished build. Memory stays bounded: text and tokens move through
in chunks; only per-row index arrays are whole.
"""

from __future__ import annotations

import datetime as dt
import errno
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dataprep import blend, decontaminate, locking, manifest as mf, unsup
from dataprep.errors import DataprepError
from dataprep.format import PART_DIRS, SIDES, TEXT_TABLES, Manifest, part_dir
from dataprep.inputs import Inputs, resolve_inputs
from dataprep.options import PrepareOptions
from dataprep.plan import plan, prompt_overlap
from dataprep.pool import normalize
from dataprep.screen import screen
from dataprep.write import Member, TextTables, write_part

__all__ = ["PrepareOptions", "Result", "prepare"]


@dataclass(frozen=True)
class Result:
    manifest: dict
    reused: bool
    out: Path


def prepare(opts: PrepareOptions, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Result:
    started = time.perf_counter()
    inputs = resolve_inputs(opts)
    if not opts.force and mf.is_complete(opts.out, inputs.cache_key):
        return Result(Manifest.read(opts.out).data, reused=True, out=opts.out)
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        with locking.exclusive(opts.out, on_wait=log):
            if not opts.force and mf.is_complete(opts.out, inputs.cache_key):  # another process built it meanwhile
                return Result(Manifest.read(opts.out).data, reused=True, out=opts.out)
            for stale in opts.out.glob(".staging-*"):  # left by a killed run; safe to remove under the lock
                shutil.rmtree(stale, ignore_errors=True)
            staging = opts.out / f".staging-{uuid.uuid4().hex[:12]}"
            staging.mkdir()
            try:
                manifest = mf.seal(_build(inputs, staging), {"created": _now(), "seconds": round(time.perf_counter() - started, 2)})
                mf.commit(staging, opts.out, manifest, PART_DIRS + TEXT_TABLES)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise DataprepError(_write_error(opts.out, exc)) from None
    return Result(manifest, reused=False, out=opts.out)


def _build(inputs: Inputs, staging: Path) -> dict:
    """Stages 2 to 5 into `staging`; returns the manifest's content."""
    opts = inputs.options
    for sub in list(TEXT_TABLES) + [part_dir(p) for p in inputs.wanted]:
        (staging / sub).mkdir()
    # The benchmark files are read first: a bad one fails before the datasets are normalized.
    benchmark = decontaminate.load(inputs.benchmarks, opts.decontam_ngram) if inputs.benchmarks else None
    pools = [normalize(d.dataset, staging, inputs.adapters, opts.progress) for d in inputs.datasets]
    pools = screen(pools, opts.dedup, benchmark, opts.progress)
    split = plan(pools, [(inputs.split_for(d), d.phases(inputs.wanted)) for d in inputs.datasets], opts.seed, opts.split_by)
    tables = [TextTables(staging, pool, s) for pool, s in zip(pools, split.datasets)]
    mix = blend.Mix(list(inputs.weights) if inputs.weights else None, main=len(opts.data))
    parts = {}
    for phase in inputs.wanted:
        for side in SIDES:
            members = [Member(pool, s.parts[side][phase - 1], t)
                       for d, pool, s, t in zip(inputs.datasets, pools, split.datasets, tables) if phase in d.phases(inputs.wanted)]
            parts[phase, side] = write_part(phase, side, members, inputs.tokenizer, opts, staging, mix)
    records = [t.normalized for t in tables] + [t.close() for t in tables]
    ptx = unsup.build(inputs.unsup, inputs.tokenizer, opts.unsup_block, staging, opts.shard_bytes, opts.strict) if inputs.unsup else None
    return mf.assemble(inputs, pools, split, parts, prompt_overlap(pools, split, inputs.wanted), records, ptx, benchmark)


def _write_error(out: Path, exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"--out {out}: no space left on device{where}; free some space or choose another --out (the previous output, if any, is unchanged)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"--out {out}: not writable{where}: {exc.strerror}; choose another --out"
    return f"--out {out}: cannot write{where}: {exc.strerror or exc}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
