"""Stage 2b of prepare, screen: the rows dropped after parsing as `duplicate` (dedup.py: a copy of an
earlier row, in --data order and file order) or `contaminated` (decontaminate.py: sharing an n-word
window with a --decontaminate file).

Why here, before the split and not after it: a screened row keeps its place in its pool, exactly like
a row dropped while parsing, so the split (stage 3) deals out DeepSpeed-Chat's indices over every row
and each remaining row keeps the side and phase DeepSpeed-Chat gives it. Dropping the rows first would
renumber every later row and reshuffle the whole split. A screened row is then counted in the phase
and side the split gives it (manifest, summary table) and written to dropped/ with its detail.

A row that is both is a `duplicate`: its first copy is kept or dropped on its own account. Every
parsed row is screened, whichever phase it falls in (the pools are read once, in order).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from dataprep import dedup, memory
from dataprep.decontaminate import Benchmark
from dataprep.pool import Pool, Screened

REASONS = ("duplicate", "contaminated")
DUPLICATE, CONTAMINATED = range(len(REASONS))
CHUNK = 2048  # rows per read: as fast as 4,096 (measured), with half the temporaries in flight
THREADS = 2  # numpy and polars release the GIL: two chunks at a time use both cores of a small machine


@dataclass(frozen=True)
class _Scanned:
    """What one chunk of a pool gave: the keys of its parsed rows, and the rows the benchmark flags."""

    parsed: np.ndarray  # pool positions of the chunk's parsed rows
    keys: np.ndarray | None  # (len(parsed), 2) dedup keys; None without dedup
    flagged: np.ndarray  # pool positions of parsed rows with a window signature in the benchmark


def screen(pools: list[Pool], dedup_rows: bool, benchmark: Benchmark | None, progress: bool = False) -> list[Pool]:
    """The pools with the screen's verdicts (unchanged when neither dedup nor a benchmark is asked for)."""
    if not dedup_rows and benchmark is None:
        return pools
    scanned = [_scan(pool, dedup_rows, benchmark, progress) for pool in pools]
    code = [np.full(pool.size, -1, np.int8) for pool in pools]
    detail: list[dict[int, str]] = [{} for _ in pools]
    if dedup_rows:
        _mark_duplicates(pools, scanned, code, detail)
    if benchmark is not None:
        for pool, chunks, codes, details in zip(pools, scanned, code, detail):
            flagged = np.concatenate([c.flagged for c in chunks])
            flagged = flagged[codes[flagged] < 0]  # a duplicate stays a duplicate
            rows = pool.take(flagged)
            texts = list(zip(*(rows.column(f).to_pylist() for f in dedup.FIELDS)))
            for row, window in zip(flagged.tolist(), benchmark.confirm(texts)):
                if window is not None:
                    codes[row], details[row] = CONTAMINATED, window
    return [pool.with_screen(Screened(c, REASONS, d)) for pool, c, d in zip(pools, code, detail)]


def _scan(pool: Pool, dedup_rows: bool, benchmark: Benchmark | None, progress: bool) -> list[_Scanned]:
    """One pass over a pool, CHUNK rows at a time, THREADS chunks in flight."""

    def chunk(start: int) -> _Scanned:
        rows = pool.read(start, min(start + CHUNK, pool.size)).select(list(dedup.FIELDS))
        mine = pool.parsed[start : start + rows.num_rows]
        parsed = np.flatnonzero(mine) + start
        keys = dedup.content_keys(rows)[mine] if dedup_rows else None
        flagged = np.zeros(rows.num_rows, bool)
        if benchmark is not None:
            for field in dedup.FIELDS:
                flagged |= benchmark.candidates(rows.column(field).combine_chunks())
        return _Scanned(parsed, keys, np.flatnonzero(flagged & mine) + start)

    starts = range(0, pool.size, CHUNK)
    out = []
    with ThreadPoolExecutor(THREADS) as threads, tqdm(total=pool.size, desc=f"screen {pool.name}", unit="row",
                                                      disable=None if progress else True) as bar:
        for start, result in zip(starts, threads.map(chunk, starts)):  # map keeps the order
            out.append(result)
            bar.update(min(CHUNK, pool.size - start))
            memory.release()  # the threads' freed temporaries (memory.py), about a millisecond a chunk
    return out


def _mark_duplicates(pools: list[Pool], scanned: list[list[_Scanned]], code: list[np.ndarray], detail: list[dict[int, str]]) -> None:
    """Mark every parsed row whose key an earlier parsed row has; the detail names that first copy."""
    keys = np.concatenate([c.keys for chunks in scanned for c in chunks] or [np.zeros((0, 2), np.uint64)])
    # Global position g of a parsed row (in --data order, then pool order) -> its pool and its row there.
    row = np.concatenate([c.parsed for chunks in scanned for c in chunks] or [np.zeros(0, np.int64)])
    owner = np.concatenate([np.full(sum(len(c.parsed) for c in chunks), i, np.int64) for i, chunks in enumerate(scanned)])
    first = dedup.first_copies(keys)
    copies = np.flatnonzero(first != np.arange(len(first)))
    originals = first[copies]
    names = {}
    for i, pool in enumerate(pools):  # the source and row_id of each first copy, read once
        mine = np.unique(row[originals[owner[originals] == i]])
        taken = pool.take(mine)
        for r, source, row_id in zip(mine.tolist(), taken.column("source").to_pylist(), taken.column("row_id").to_pylist()):
            names[i, r] = f"copy of {source} row {row_id}"
    for g, f in zip(copies.tolist(), originals.tolist()):
        p, r = int(owner[g]), int(row[g])
        code[p][r] = DUPLICATE
        detail[p][r] = names[int(owner[f]), int(row[f])]
