"""Stage 2b of prepare, screen: the rows dropped after parsing as `duplicate` (dedup.py: a copy of an
earlier row, in --data order and file order) or `contaminated` (decontaminate.py: sharing an n-word
window with a --decontaminate file).

Why here, before the split and not after it: a screened row keeps its place in its pool, exactly like
a row dropped while parsing, so the split (stage 3) deals out DeepSpeed-Chat's indices over every row
and each remaining row keeps the side and phase DeepSpeed-Chat gives it. Dropping the rows first would
renumber every later row and reshuffle the whole split. A screened row is then counted in the phase
and side the split gives it (manifest, summary table) and written to dropped/ with its detail.

It runs beside stage 2: normalize hands each canonical table to `Screen.scan` as it writes it, and a
second thread computes the tables' dedup keys (polars) and flags the rows with a window signature in
the benchmark (numpy), while normalize's Python parses on. Both release the GIL, so on two cores the
screen costs little wall time. `Screen.apply` then keeps the first copy of each key and confirms the
flagged rows word for word. A row that is both is a `duplicate`: its first copy is kept or dropped on
its own account. Every parsed row is screened, whichever phase it falls in.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import dedup, memory
from dataprep.decontaminate import Benchmark
from dataprep.pool import Pool, Screened

REASONS = ("duplicate", "contaminated")
DUPLICATE, CONTAMINATED = range(len(REASONS))
IN_FLIGHT = 4  # tables queued for the screen's thread before normalize waits: bounds the memory held


@dataclass(frozen=True)
class _Scanned:
    """What one canonical table gave: the keys of its parsed rows, and the rows the benchmark flags."""

    parsed: np.ndarray  # pool positions of the table's parsed rows
    keys: np.ndarray | None  # (len(parsed), 2) dedup keys; None without dedup
    flagged: np.ndarray  # pool positions of parsed rows with a window signature in the benchmark


class Screen:
    """Duplicates and contaminated rows of the datasets normalize writes, in --data order."""

    def __init__(self, dedup_rows: bool, benchmark: Benchmark | None):
        self.dedup_rows, self.benchmark = dedup_rows, benchmark
        self.active = dedup_rows or benchmark is not None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="screen")
        self._pending: deque[tuple[int, Future]] = deque()
        self._scanned: list[list[_Scanned]] = []

    def __enter__(self) -> "Screen":
        return self

    def __exit__(self, *exc) -> None:
        self._thread.shutdown(cancel_futures=True)  # normalize failed: drop what is queued

    def observer(self) -> Callable[[int, pa.Table], None] | None:
        """The `observe` callback for normalizing the next dataset (None when there is nothing to screen)."""
        if not self.active:
            return None
        self._scanned.append([])
        dataset = len(self._scanned) - 1
        return lambda start, rows: self._scan(dataset, start, rows)

    def _scan(self, dataset: int, start: int, rows: pa.Table) -> None:
        while len(self._pending) >= IN_FLIGHT:
            self._collect()
        self._pending.append((dataset, self._thread.submit(self._chunk, start, rows)))

    def _collect(self) -> None:
        dataset, result = self._pending.popleft()
        self._scanned[dataset].append(result.result())
        memory.release()  # the thread's freed temporaries (memory.py), about a millisecond a table

    def _chunk(self, start: int, rows: pa.Table) -> _Scanned:
        parsed = pc.is_null(rows.column("drop_reason")).to_numpy(zero_copy_only=False)
        keys = dedup.content_keys(rows)[parsed] if self.dedup_rows else None
        flagged = np.zeros(rows.num_rows, bool)
        if self.benchmark is not None:
            for field in dedup.FIELDS:
                flagged |= self.benchmark.candidates(rows.column(field).combine_chunks())
        return _Scanned(np.flatnonzero(parsed) + start, keys, np.flatnonzero(flagged & parsed) + start)

    def apply(self, pools: list[Pool]) -> list[Pool]:
        """The pools with the screen's verdicts, once every table is scanned."""
        while self._pending:
            self._collect()
        if not self.active:
            return pools
        code = [np.full(pool.size, -1, np.int8) for pool in pools]
        detail: list[dict[int, str]] = [{} for _ in pools]
        if self.dedup_rows:
            _mark_duplicates(pools, self._scanned, code, detail)
        if self.benchmark is not None:
            for pool, chunks, codes, details in zip(pools, self._scanned, code, detail):
                flagged = np.concatenate([c.flagged for c in chunks] or [np.zeros(0, np.int64)])
                flagged = flagged[codes[flagged] < 0]  # a duplicate stays a duplicate
                rows = pool.take(flagged)
                texts = list(zip(*(rows.column(f).to_pylist() for f in dedup.FIELDS)))
                for row, window in zip(flagged.tolist(), self.benchmark.confirm(texts)):
                    if window is not None:
                        codes[row], details[row] = CONTAMINATED, window
        return [pool.with_screen(Screened(c, REASONS, d)) for pool, c, d in zip(pools, code, detail)]


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
