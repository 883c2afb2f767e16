"""Random access to one phase's shards as zero-copy numpy views.

`ShardDataset(out_dir, phase, side)` memory-maps every `phaseP/side-*.arrow` shard (phase "unsup": the
PTX blocks in `unsup/train-*.arrow`). Row i comes back
as numpy arrays that point straight into the mapped file: no copy, no Python lists, O(1) per row
whatever the size, and the page cache is shared by every rank on the machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from dataprep.format import LOSS_MASK, SCORE_COLUMNS, TOKEN_COLUMNS, Part, list_views, numpy_view, open_shards


class ShardDataset:
    """One phase and side of a finished `dataprep prepare` output. Opening it checks every shard
    against the manifest (listed, size, sha256, schema, metadata, rows, offsets) and refuses an
    unfinished build, an edited manifest, a missing or extra shard, or a changed one, with a
    DataprepError naming it. `verify=False` skips the sha256 (the structural checks stay)."""

    def __init__(self, out_dir: Path | str, phase: Part, side: str = "train", verify: bool = True):
        shards = open_shards(out_dir, phase, side, hashed=verify)
        self.phase, self.side, self.paths = phase, side, shards.paths
        self.max_seq_len, self.max_prompt_len = shards.manifest.max_seq_len, shards.manifest.max_prompt_len
        self.tokenizer = shards.manifest.tokenizer
        self.cache_key = shards.manifest.data["cache_key"]  # what the shards were built from: a resumed run must match it
        self.sha256 = [record["sha256"] for record in shards.manifest.part(phase, side)["shards"]]  # these shards' bytes
        lists = TOKEN_COLUMNS[phase] + ((LOSS_MASK,) if phase == 1 else ())  # per-token columns
        values: dict[str, list[np.ndarray]] = {c: [] for c in lists}
        offsets: dict[str, list[np.ndarray]] = {c: [] for c in lists}
        scalars: dict[str, list[np.ndarray]] = {}
        starts = [0]
        for table in shards.tables:
            for batch in table.to_batches():
                for name in values:
                    batch_offsets, batch_values = list_views(batch.column(name))
                    offsets[name].append(batch_offsets)
                    values[name].append(batch_values)
                for name in ("row_id", "prompt_len", *SCORE_COLUMNS):
                    if name in batch.schema.names:
                        column = batch.column(name)
                        if column.null_count:  # a score the data lacks reads as NaN
                            column = pc.fill_null(column, float("nan"))
                        scalars.setdefault(name, []).append(numpy_view(column))
                starts.append(starts[-1] + batch.num_rows)
        self._starts = np.asarray(starts, dtype=np.int64)
        # Token rows stay in the mapped files (one values view per record batch); only each row's
        # [begin, end) within its batch and the small scalar columns are gathered here, so a batch of
        # rows is located with vectorised lookups (8 bytes per row and token column, 12 for scalars).
        self._values = values
        self._begin = {name: _joined([o[:-1] for o in parts]) for name, parts in offsets.items()}
        self._end = {name: _joined([o[1:] for o in parts]) for name, parts in offsets.items()}
        self._scalars = {name: _joined(parts) for name, parts in scalars.items()}

    def scalar(self, name: str) -> np.ndarray | None:
        """A per-row scalar column (row_id, prompt_len, chosen_score, ...) over all shards; None when absent."""
        return self._scalars.get(name)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def lengths(self, column: str) -> np.ndarray:
        """Tokens per row of a token column (from the offsets: no token is read)."""
        return self._end[column] - self._begin[column]

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray | int]]:
        """Rows at `indices` (what torch's DataLoader asks for a whole batch at once): the batch and
        offset lookups are vectorised; each token row is a view into the mapped file."""
        n = len(self)
        index = np.asarray(indices, dtype=np.int64)
        if index.size and (index.min() < -n or index.max() >= n):
            bad = next(i for i in indices if not -n <= i < n)
            raise IndexError(f"index {bad} out of range for {n} rows")
        index %= max(n, 1)
        batches = (np.searchsorted(self._starts, index, side="right") - 1).tolist()
        rows: list[dict] = [{} for _ in indices]
        for name, views in self._values.items():
            for row, b, begin, end in zip(rows, batches, self._begin[name][index].tolist(), self._end[name][index].tolist()):
                row[name] = views[b][begin:end]
        for name, column in self._scalars.items():
            for row, value in zip(rows, column[index].tolist()):
                row[name] = value
        return rows


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)
