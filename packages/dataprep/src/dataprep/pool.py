"""Stage 2 of prepare, normalize: every file of a dataset, through its adapter, into one memory-mapped
staging "pool" file of canonical rows.

A row's position in the pool (files in path order) is its DeepSpeed-Chat index within its side. Rows
dropped while parsing stay in the pool with their reason: they keep their index, so the split (stage
3, plan.py) gives DeepSpeed-Chat's phase row sets, and they are counted in the phase they fall in.
Per row the pool also keeps a 64-bit group key (the `group` column, else the prompt text) for
`--split-by prompt` and the prompt-overlap report, and whether it was kept while parsing. A ranking
dataset's rows are pairs, several per prompt (sources/ranking.py): the pool marks all but the first
kept pair of each prompt, which phases 1 and 3 leave out. The screen stage (screen.py) then marks the
rows it drops (`Screened`); they too keep their index, and every read (`take`) returns them with their
screen reason, as if they had been dropped while parsing. A prompt's first kept pair is then its first
pair the screen kept too, so a screened first pair hands phases 1 and 3 to the next one.
"""

from __future__ import annotations

import dataclasses
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
class Screened:
    """Rows the screen stage drops after parsing: per row a code (-1: kept) into `reasons`, and a detail
    for dropped/ (the first copy of a duplicate, the n-gram of a contaminated row)."""

    code: np.ndarray  # int8 per pool row
    reasons: tuple[str, ...]
    detail: dict[int, str]  # pool row -> detail

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.code[self.code >= 0], minlength=len(self.reasons))
        return {reason: int(n) for reason, n in zip(self.reasons, found) if n}


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
    later: np.ndarray  # bool per row: a usable pair of a ranked prompt after its first usable one (phases 1 and 3 skip it)
    screened: Screened | None = None  # rows the screen stage drops (screen.py)

    @property
    def ranked(self) -> bool:
        """A dataset of rankings: its rows are pairs, several per prompt, split by prompt group always."""
        return any(f.ranking is not None for f in self.files)

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def usable(self) -> np.ndarray:
        """bool per row: kept while parsing and by the screen."""
        return self.parsed if self.screened is None else self.parsed & (self.screened.code < 0)

    def with_screen(self, screened: Screened) -> "Pool":
        """This pool with the screen's verdicts, and a ranked prompt's first pair the first the screen kept."""
        usable = self.parsed & (screened.code < 0)
        return dataclasses.replace(self, screened=screened, later=later_pairs(self.keys, usable) if self.ranked else self.later)

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
        """Copies of the rows at `index`, in that order; a screened row carries its screen reason."""
        rows = shards.take_rows(self.path, self.batch_starts, index, POOL_SCHEMA)
        if self.screened is None:
            return rows
        code = self.screened.code[np.asarray(index, dtype=np.int64)]
        if not (code >= 0).any():
            return rows
        names = np.asarray(self.screened.reasons + (None,), dtype=object)[code]  # code -1 picks the None
        reason = pc.coalesce(pa.array(names, pa.string()), rows.column("drop_reason"))
        return rows.set_column(rows.schema.get_field_index("drop_reason"), "drop_reason", reason)

    def read(self, start: int, stop: int) -> pa.Table:
        """Rows start..stop-1 as the file holds them (no screen verdicts), without copying: a sequential
        scan's read. The table maps the file until it is dropped, so scan in bounded ranges."""
        first, last = np.searchsorted(self.batch_starts, [start, stop - 1], side="right") - 1
        reader = pa.ipc.open_file(pa.memory_map(str(self.path)))
        table = pa.Table.from_batches([reader.get_batch(int(b)) for b in range(first, last + 1)], schema=POOL_SCHEMA)
        return table.slice(start - int(self.batch_starts[first]), stop - start)

    def details(self, index: np.ndarray) -> list[str | None]:
        """The screen's detail for the rows at `index` (None where it has none)."""
        detail = self.screened.detail if self.screened is not None else {}
        return [detail.get(int(i)) for i in index]

    def annotated(self, side_of: np.ndarray, phase_of: np.ndarray, chunk: int = 1024):
        """(kept rows, rows dropped while parsing), batch by batch in file order, each row with the side
        and phase the split gave it: the kept rows in the normalized/ layout, the others in dropped/'s."""
        for start in range(0, self.size, chunk):
            rows = self.take(np.arange(start, min(start + chunk, self.size)))
            rows = rows.append_column("side", pa.array(np.asarray(SIDES)[side_of[start : start + rows.num_rows]], pa.string()))
            rows = rows.append_column("phase", pa.array(phase_of[start : start + rows.num_rows]))
            kept = pc.is_null(rows.column("drop_reason"))
            gone = np.flatnonzero(~kept.to_numpy(zero_copy_only=False))
            yield rows.filter(kept).select(NORMALIZED_SCHEMA.names), dropped_rows(rows.take(pa.array(gone)), details=self.details(gone + start))


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
            meta = pa.table({"row_id": pa.array(batch.row_ids, pa.int64()), "source": pa.array([file.source] * n, pa.string())})
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


def dropped_rows(rows: pa.Table, reasons: list[str] | None = None, details: list[str | None] | None = None) -> pa.Table:
    """Pool rows (with side and phase) in the dropped/ layout; `reasons` default to their drop_reason,
    `details` to none."""
    reason = pa.array(reasons, pa.string()) if reasons is not None else rows.column("drop_reason")
    detail = pa.array(details, pa.string()) if details is not None else pa.nulls(rows.num_rows, pa.string())
    columns = {name: rows.column(name) for name in DROPPED_SCHEMA.names if name not in ("reason", "detail")}
    return pa.table({**columns, "reason": reason, "detail": detail}).select(DROPPED_SCHEMA.names).cast(DROPPED_SCHEMA)


def count_reasons(reasons: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    counts = pc.value_counts(pc.drop_null(reasons)).to_pylist() if len(reasons) else []
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
