"""Pass 1 of `prepare`: stream each dataset's files through its adapter into one memory-mapped
"pool" file, then split it the way DeepSpeed-Chat does.

A row's position among its side's rows (files in path order) is its DeepSpeed-Chat index. A dataset
with a single side is carved 9:1 into train and eval first; each side is then cut by --split. Rows
dropped while parsing keep their index and count as drops of the phase they fall in, so the phase row
sets are DeepSpeed-Chat's for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dataprep import grouping, shards
from dataprep.errors import DataprepError
from dataprep.phases import PHASES
from dataprep.sources import CANONICAL, SIDES, Dataset, iter_canonical
from dataprep.sources.options import AdapterOptions
from dataprep.split import CARVE_SPLIT, split_indices

# Rows per record batch of the pool file. Phase parts are read in DeepSpeed-Chat's (random) order, one
# Arrow take per batch a chunk touches (shards.take_rows): tiny batches make that a call per row (8-row
# batches cost 100 ms per 2,048-row chunk, 256-row ones 15 ms), while a take still reads only the pages
# of the rows it takes, so memory per chunk does not grow with the batch size.
POOL_BATCH_ROWS = 256
POOL_SCHEMA = pa.schema([("row_id", pa.int64()), ("source", pa.string())] + list(CANONICAL))
TABLES_CHUNK = 1024  # rows per read in Pool.tables (text: a few MB per chunk)
SIDE_CODE = {"train": 0, "eval": 1}
# The dropped/ table: which row, where it was headed, why, and its text.
DROPPED_SCHEMA = pa.schema(
    [("row_id", pa.int64()), ("source", pa.string()), ("side", pa.string()), ("phase", pa.int8()), ("reason", pa.string()),
     ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())]
)


@dataclass
class Pool:
    """One dataset's rows in a staging file (file order) and its DeepSpeed-Chat split."""

    name: str
    path: Path
    parts: dict[str, list[np.ndarray]]  # side -> phase 1, 2, 3 row positions, in DeepSpeed-Chat order
    side_of: np.ndarray  # int8 per row: SIDE_CODE after the carve
    phase_of: np.ndarray  # int8 per row: the phase its split part feeds
    batch_starts: np.ndarray  # first row of each record batch in the file, and the row count at the end
    keys: np.ndarray  # uint64 group key per row (grouping.row_keys): --split-by prompt and the overlap report
    parsed: np.ndarray  # bool per row: kept while parsing

    def take(self, index: np.ndarray) -> pa.Table:
        """Copies of the rows at `index`, in that order."""
        return shards.take_rows(self.path, self.batch_starts, index, POOL_SCHEMA)

    def tables(self):
        """(normalized rows, rows dropped while parsing), batch by batch, in one pass over the file: the
        kept rows with their side and phase, and the dropped rows in the dropped/ layout."""
        for start in range(0, len(self.side_of), TABLES_CHUNK):
            rows = self._annotated(start, TABLES_CHUNK)
            kept = pc.is_null(rows.column("drop_reason"))
            yield rows.filter(kept).drop_columns(["drop_reason"]), dropped_rows(rows.filter(pc.invert(kept)))

    def _annotated(self, start: int, length: int) -> pa.Table:
        rows = self.take(np.arange(start, min(start + length, len(self.side_of))))
        sides = np.asarray(SIDES)[self.side_of[start : start + rows.num_rows]]
        rows = rows.append_column("side", pa.array(sides, pa.string()))
        return rows.append_column("phase", pa.array(self.phase_of[start : start + rows.num_rows]))


def dropped_rows(rows: pa.Table, reasons: list[str] | None = None) -> pa.Table:
    reason = pa.array(reasons, pa.string()) if reasons is not None else rows.column("drop_reason")
    columns = {name: rows.column(name) for name in DROPPED_SCHEMA.names if name != "reason"}
    return pa.table({**columns, "reason": reason}).select(DROPPED_SCHEMA.names).cast(DROPPED_SCHEMA)


def build_pool(dataset: Dataset, described: dict, wanted: list[int], staging: Path, opts, pins: grouping.Pins | None = None) -> Pool:
    """Write the pool and split it: by row (DeepSpeed-Chat), or with `pins` by prompt group (grouping.py)."""
    path, keys, parsed = _write_pool(dataset, described, staging, opts)
    # Which rows are which side follows from the files' order and row counts: no need to read the pool.
    by_side: dict[str, list[np.ndarray]] = {}
    offset = 0
    for file, record in zip(dataset.files, described["files"]):
        by_side.setdefault(file.side, []).append(np.arange(offset, offset + record["rows"], dtype=np.int64))
        offset += record["rows"]
    size = offset
    starts = shards.batch_starts(size, POOL_BATCH_ROWS)  # the writer's exact batches
    by_side = {s: np.concatenate(parts) for s, parts in by_side.items() if sum(len(p) for p in parts)}
    described["rows"] = {s: len(ix) for s, ix in by_side.items()}
    if pins is not None:
        side_of, phase_of, parts = grouping.split_groups(dataset.name, keys, by_side, wanted, described, opts, pins)
        return Pool(dataset.name, path, parts, side_of, phase_of, starts, keys, parsed)
    if len(by_side) == 1:
        # Like DeepSpeed-Chat's train-only datasets: carve the one side 9:1 into train and eval first.
        (only, ix), = by_side.items()
        train, evals = split_indices(opts.seed, CARVE_SPLIT, len(ix), parts=2)
        if len(train) == 0 or len(evals) == 0:
            raise DataprepError(
                f"{dataset.name}: only {len(ix)} {only} rows and no other side; the {CARVE_SPLIT} train/eval carve "
                "leaves one side empty; add rows or a *test* file"
            )
        described["carve"] = {"from": only, "split": CARVE_SPLIT, "train": len(train), "eval": len(evals)}
        by_side = {"train": ix[train], "eval": ix[evals]}
    side_of = np.zeros(size, dtype=np.int8)
    phase_of = np.zeros(size, dtype=np.int8)
    parts = {}
    for side, ix in by_side.items():
        side_of[ix] = SIDE_CODE[side]
        parts[side] = [ix[p] for p in _split_side(dataset.name, side, len(ix), wanted, described, opts)]
        for phase, rows in zip(PHASES, parts[side]):
            phase_of[rows] = phase
    return Pool(dataset.name, path, parts, side_of, phase_of, starts, keys, parsed)


def _write_pool(dataset: Dataset, described: dict, staging: Path, opts) -> tuple[Path, np.ndarray, np.ndarray]:
    """The pool file, and per row its group key and whether it was kept while parsing."""
    keys, parsed = [], []
    writer = shards.ArrowFile(staging / f".pool-{dataset.name}.arrow", POOL_SCHEMA, rows_per_batch=POOL_BATCH_ROWS)
    bar = tqdm(desc=f"read {dataset.name}", unit="row", disable=None if opts.progress else True)
    for file, record in zip(dataset.files, described["files"]):
        record["rows"], record["dropped"] = 0, {}
        for canonical, adapter in iter_canonical(dataset, file, opts.adapters or AdapterOptions(strict=opts.strict)):
            n = canonical.num_rows
            record["adapter"] = adapter
            for reason, count in count_reasons(canonical.column("drop_reason")).items():
                record["dropped"][reason] = record["dropped"].get(reason, 0) + count
            ids = pa.array(np.arange(record["rows"], record["rows"] + n, dtype=np.int64))
            meta = pa.table({"row_id": ids, "source": pa.array([file.source] * n, pa.string())})
            writer.write(pa.Table.from_arrays(meta.columns + canonical.columns, schema=POOL_SCHEMA))
            keys.append(grouping.row_keys(canonical, file.source, record["rows"]))
            parsed.append(pc.is_null(canonical.column("drop_reason")).to_numpy(zero_copy_only=False))
            record["rows"] += n
            bar.update(n)
        record["dropped"] = dict(sorted(record["dropped"].items()))
    bar.close()
    return writer.close(), _joined(keys, np.uint64), _joined(parsed, bool)


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


def _split_side(name: str, side: str, size: int, wanted: list[int], described: dict, opts) -> list[np.ndarray]:
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


def count_reasons(reasons: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(reasons)).to_pylist() if len(reasons) else []
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}
