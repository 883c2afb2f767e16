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

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dataprep import dedup
from dataprep.decontaminate import Benchmark
from dataprep.pool import Pool, Screened

REASONS = ("duplicate", "contaminated")
DUPLICATE, CONTAMINATED = range(len(REASONS))
CHUNK = 4096  # rows per read: large enough for polars and numpy, small enough to keep memory flat


def screen(pools: list[Pool], dedup_rows: bool, benchmark: Benchmark | None, progress: bool = False) -> list[Pool]:
    """The pools with the screen's verdicts (unchanged when neither dedup nor a benchmark is asked for)."""
    if not dedup_rows and benchmark is None:
        return pools
    keys: list[np.ndarray] = []
    matched: list[dict[int, str]] = [{} for _ in pools]
    bar = tqdm(total=sum(int(p.parsed.sum()) for p in pools), desc="screen", unit="row", disable=None if progress else True)
    for p, pool in enumerate(pools):
        for rows, positions in _chunks(pool):
            if dedup_rows:
                keys.append(dedup.content_keys(rows))
            if benchmark is not None:
                for field in dedup.FIELDS:
                    for i, window in benchmark.find(pc.fill_null(rows.column(field).combine_chunks(), "")).items():
                        matched[p].setdefault(int(positions[i]), window)
            bar.update(len(positions))
    bar.close()
    code = [np.full(pool.size, -1, np.int8) for pool in pools]
    detail: list[dict[int, str]] = [{} for _ in pools]
    if dedup_rows:
        _mark_duplicates(pools, np.concatenate(keys) if keys else np.zeros((0, 2), np.uint64), code, detail)
    for p, found in enumerate(matched):
        for row, window in found.items():
            if code[p][row] < 0:
                code[p][row] = CONTAMINATED
                detail[p][row] = window
    return [pool.screen(Screened(c, REASONS, d)) for pool, c, d in zip(pools, code, detail)]


def _chunks(pool: Pool) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """(rows, their pool positions) of the rows kept while parsing, in pool order, CHUNK at a time."""
    parsed = np.flatnonzero(pool.parsed)
    for start in range(0, len(parsed), CHUNK):
        positions = parsed[start : start + CHUNK]
        yield pool.take(positions).select(list(dedup.FIELDS)), positions


def _mark_duplicates(pools: list[Pool], keys: np.ndarray, code: list[np.ndarray], detail: list[dict[int, str]]) -> None:
    """Mark every parsed row whose key an earlier parsed row has; the detail names that first copy."""
    # Global position g of a parsed row -> (its pool, its row in the pool).
    owner = np.concatenate([np.full(int(p.parsed.sum()), i, np.int64) for i, p in enumerate(pools)])
    row = np.concatenate([np.flatnonzero(p.parsed) for p in pools])
    first = dedup.first_copies(keys)
    copies = np.flatnonzero(first != np.arange(len(first)))
    if len(copies) == 0:
        return
    originals = first[copies]
    names = {}
    for i, pool in enumerate(pools):  # the source and row_id of each first copy, read once
        mine = np.unique(row[originals[owner[originals] == i]])
        if len(mine):
            taken = pool.take(mine)
            for r, source, row_id in zip(mine.tolist(), taken.column("source").to_pylist(), taken.column("row_id").to_pylist()):
                names[i, r] = f"copy of {source} row {row_id}"
    for g, f in zip(copies.tolist(), originals.tolist()):
        p, r = int(owner[g]), int(row[g])
        code[p][r] = DUPLICATE
        detail[p][r] = names[int(owner[f]), int(row[f])]
