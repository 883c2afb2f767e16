"""Stage 2 of prepare, normalize: every file of a dataset, through its adapter, into one memory-mapped
staging "pool" file of canonical rows.

A row's position in the pool (files in path order) is its DeepSpeed-Chat index within its side. Rows
dropped while parsing stay in the pool with their reason: they keep their index, so the split (stage
3, plan.py) gives DeepSpeed-Chat's phase row sets, and they are counted in the phase they fall in.
Per row the pool also keeps a 64-bit group key (the `group` column, else the prompt text) for
`--split-by prompt` and the prompt-overlap report, and whether it was kept while parsing. A ranking
dataset's rows are pairs, several per prompt (sources/ranking.py): the pool marks all but the first
kept pair of each prompt, which phases 1 and 3 leave out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dataprep import shards
from dataprep.format import DROPPED_SCHEMA, NORMALIZED_SCHEMA, SIDES
from dataprep.sources import CANONICAL, Dataset, iter_canonical
from dataprep.sources.options import AdapterOptions
from dataprep.sources.ranking import RankingCounts

# Rows per record batch of the pool file. Phase parts are read in DeepSpeed-Chat's (random) order, one
# Arrow take per batch a chunk touches (shards.take_rows): tiny batches make that a call per row (8-row
# batches cost 100 ms per 2,048-row chunk, 256-row ones 15 ms), while a take still reads only the pages
# of the rows it takes, so memory per chunk does not grow with the batch size.
POOL_BATCH_ROWS = 256
POOL_SCHEMA = pa.schema([("row_id", pa.int64()), ("source", pa.string())] + list(CANONICAL))


@dataclass(frozen=True)
class FileCounts:
    """What normalizing one input file gave: its rows, those dropped while parsing, its adapter."""

    rows: int
    dropped: dict[str, int]
    adapter: str | None  # None only for a file that yielded no table
    ranking: RankingCounts | None = None  # a ranking file's prompts, responses and pairs


@dataclass(frozen=True)
class Pool:
    """One dataset's canonical rows in a staging file, in file order."""

    name: str
    path: Path
    files: list[FileCounts]  # per input file, in the dataset's order
    file_sides: list[str]  # per input file: the side its name or split gives
    keys: np.ndarray  # uint64 group key per row (group_keys)
    parsed: np.ndarray  # bool per row: kept while parsing
    batch_starts: np.ndarray  # first row of each record batch of the file, then the row count
    later: np.ndarray  # bool per row: a kept pair of a ranked prompt after its first (phases 1 and 3 skip it)

    @property
    def ranked(self) -> bool:
        """A dataset of rankings: its rows are pairs, several per prompt, split by prompt group always."""
        return any(f.ranking is not None for f in self.files)

    @property
    def size(self) -> int:
        return len(self.keys)

    def side_rows(self) -> dict[str, np.ndarray]:
        """Side -> its rows' positions in file order, for the sides that have rows (in order of first
        appearance): follows from the files' order and row counts, without reading the pool."""
        by_side: dict[str, list[np.ndarray]] = {}
        offset = 0
        for side, counts in zip(self.file_sides, self.files):
            by_side.setdefault(side, []).append(np.arange(offset, offset + counts.rows, dtype=np.int64))
            offset += counts.rows
        return {s: np.concatenate(parts) for s, parts in by_side.items() if sum(len(p) for p in parts)}

    def take(self, index: np.ndarray) -> pa.Table:
        """Copies of the rows at `index`, in that order."""
        return shards.take_rows(self.path, self.batch_starts, index, POOL_SCHEMA)

    def annotated(self, side_of: np.ndarray, phase_of: np.ndarray, chunk: int = 1024):
        """(kept rows, rows dropped while parsing), batch by batch in file order, each row with the side
        and phase the split gave it: the kept rows in the normalized/ layout, the others in dropped/'s."""
        for start in range(0, self.size, chunk):
            rows = self.take(np.arange(start, min(start + chunk, self.size)))
            rows = rows.append_column("side", pa.array(np.asarray(SIDES)[side_of[start : start + rows.num_rows]], pa.string()))
            rows = rows.append_column("phase", pa.array(phase_of[start : start + rows.num_rows]))
            kept = pc.is_null(rows.column("drop_reason"))
            yield rows.filter(kept).select(NORMALIZED_SCHEMA.names), dropped_rows(rows.filter(pc.invert(kept)))


def normalize(dataset: Dataset, staging: Path, options: AdapterOptions, progress: bool) -> Pool:
    """Stream every file of `dataset` through its adapter into `staging/.pool-NAME.arrow`."""
    keys, parsed, files = [], [], []
    writer = shards.ArrowFile(staging / f".pool-{dataset.name}.arrow", POOL_SCHEMA, rows_per_batch=POOL_BATCH_ROWS)
    bar = tqdm(desc=f"read {dataset.name}", unit="row", disable=None if progress else True)
    for file in dataset.files:
        rows, dropped, adapter, ranking = 0, {}, None, None
        for batch in iter_canonical(dataset, file, options):
            canonical, adapter = batch.table, batch.adapter
            if batch.ranking is not None:
                ranking = batch.ranking if ranking is None else ranking + batch.ranking
            n = canonical.num_rows
            for reason, count in count_reasons(canonical.column("drop_reason")).items():
                dropped[reason] = dropped.get(reason, 0) + count
            meta = pa.table({"row_id": pa.array(np.arange(rows, rows + n, dtype=np.int64)), "source": pa.array([file.source] * n, pa.string())})
            writer.write(pa.Table.from_arrays(meta.columns + canonical.columns, schema=POOL_SCHEMA))
            keys.append(group_keys(canonical, file.source, rows))
            parsed.append(pc.is_null(canonical.column("drop_reason")).to_numpy(zero_copy_only=False))
            rows += n
            bar.update(n)
        files.append(FileCounts(rows, dict(sorted(dropped.items())), adapter, ranking))
    bar.close()
    keys_, parsed_ = _joined(keys, np.uint64), _joined(parsed, bool)
    later = later_pairs(keys_, parsed_) if any(f.ranking is not None for f in files) else np.zeros(len(keys_), bool)
    return Pool(dataset.name, writer.close(), files, [f.side for f in dataset.files], keys_, parsed_,
                shards.batch_starts(len(keys_), POOL_BATCH_ROWS), later)


def later_pairs(keys: np.ndarray, parsed: np.ndarray) -> np.ndarray:
    """Kept rows whose group already had a kept row earlier in file order."""
    kept = np.flatnonzero(parsed)
    _, first = np.unique(keys[kept], return_index=True)
    later = parsed.copy()
    later[kept[first]] = False
    return later


def group_keys(rows: pa.Table, source: str, first_row: int) -> np.ndarray:
    """uint64 group key per row of a CANONICAL table whose rows are `first_row`, ... of `source`.

    A row's group is its canonical `group` (an SHP post, say) when the adapter sets one, else its
    prompt text; a row dropped while parsing without a prompt is a group of its own. Keys are 64-bit
    blake2b digests: a collision between two of a million groups has a probability of about 3e-8, and
    the split never depends on the key values, only on which keys are equal."""
    digests = []
    for i, (group, prompt) in enumerate(zip(rows.column("group").to_pylist(), rows.column("prompt").to_pylist())):
        if group is not None:
            text, kind = group, b"group"
        elif prompt is not None:
            text, kind = prompt, b"prompt"
        else:  # no prompt to share: the row is its own group
            text, kind = f"{source}\0{first_row + i}", b"row"
        digests.append(hashlib.blake2b(text.encode(), digest_size=8, person=kind).digest())
    return np.frombuffer(b"".join(digests), dtype="<u8").copy() if digests else np.zeros(0, np.uint64)


def dropped_rows(rows: pa.Table, reasons: list[str] | None = None) -> pa.Table:
    """Pool rows (with side and phase) in the dropped/ layout; `reasons` default to their drop_reason."""
    reason = pa.array(reasons, pa.string()) if reasons is not None else rows.column("drop_reason")
    columns = {name: rows.column(name) for name in DROPPED_SCHEMA.names if name != "reason"}
    return pa.table({**columns, "reason": reason}).select(DROPPED_SCHEMA.names).cast(DROPPED_SCHEMA)


def count_reasons(reasons: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(reasons)).to_pylist() if len(reasons) else []
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
