"""Random access to one phase's shards as zero-copy numpy views.

`ShardDataset(out_dir, phase, side)` memory-maps every `phaseP/side-*.arrow` shard. Row i comes back
as numpy arrays that point straight into the mapped file: no copy, no Python lists, O(1) per row
whatever the size, and the page cache is shared by every rank on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataprep.shards import METADATA_KEY

TOKEN_COLUMNS = {1: ("input_ids",), 2: ("chosen_input_ids", "rejected_input_ids"), 3: ("prompt_input_ids",)}


class ShardDataset:
    def __init__(self, out_dir: Path | str, phase: int, side: str = "train"):
        paths = sorted(Path(out_dir, f"phase{phase}").glob(f"{side}-*-of-*.arrow"))
        if not paths:
            raise FileNotFoundError(f"no phase {phase} {side} shards in {Path(out_dir, f'phase{phase}')}")
        self.phase, self.side, self.paths = phase, side, paths
        self.metadata = None
        self._tokens: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in TOKEN_COLUMNS[phase]}
        self._scalars: dict[str, list[np.ndarray]] = {}
        starts = [0]
        for path in paths:
            table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
            meta = json.loads(table.schema.metadata[METADATA_KEY])
            self._check_consistent(path, meta)
            for batch in table.to_batches():
                for name in self._tokens:
                    self._tokens[name].append(_list_views(batch.column(name)))
                for name in ("row_id", "prompt_len"):
                    if name in batch.schema.names:
                        self._scalars.setdefault(name, []).append(batch.column(name).to_numpy(zero_copy_only=True))
                starts.append(starts[-1] + batch.num_rows)
        self._starts = np.asarray(starts, dtype=np.int64)

    def _check_consistent(self, path: Path, meta: dict) -> None:
        if meta["phase"] != self.phase or meta["side"] != self.side:
            raise ValueError(f"{path}: metadata says phase {meta['phase']} {meta['side']}, expected {self.phase} {self.side}")
        keys = ("tokenizer_fingerprint", "eos_id", "pad_id", "bos_id", "max_seq_len", "max_prompt_len")
        if self.metadata is None:
            self.metadata = {k: meta[k] for k in keys}
        elif any(self.metadata[k] != meta[k] for k in keys):
            raise ValueError(f"{path}: written with other settings than {self.paths[0]} (tokenizer or lengths differ)")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        batch = int(np.searchsorted(self._starts, index, side="right")) - 1
        local = index - int(self._starts[batch])
        row: dict[str, np.ndarray | int] = {}
        for name, views in self._tokens.items():
            offsets, values = views[batch]
            row[name] = values[offsets[local] : offsets[local + 1]]
        for name, arrays in self._scalars.items():
            row[name] = int(arrays[batch][local])
        return row


def _list_views(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list<int32> array as numpy views of its Arrow buffers."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    values = np.frombuffer(column.values.buffers()[1], dtype=np.int32)
    return offsets, values
