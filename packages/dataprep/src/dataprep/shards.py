"""Writing Arrow IPC files, the low level of stage 5 (write.py): shards that roll over at a size and
hold fixed-size record batches, single files renamed into place when complete, and random-order reads
of staging files. The layout they write is format.py's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataprep.format import METADATA_KEY, file_sha256, shard_name

ROWS_PER_BATCH = 4096
DEFAULT_SHARD_BYTES = 256 << 20
ROWS_PER_MAP = 128  # take_rows: rows read through one memory map


class _Rebatcher:
    """Regroups rows into batches of exactly `size` rows (default ROWS_PER_BATCH), so the bytes written
    depend only on the rows, never on how the caller chunked them."""

    def __init__(self, size: int | None = None):
        self.size = size
        self.pending: list[pa.Table] = []
        self.rows = 0

    def push(self, table: pa.Table) -> list[pa.Table]:
        size = self.size or ROWS_PER_BATCH
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows < size:
            return []
        rows = pa.concat_tables(self.pending).combine_chunks()
        full = (rows.num_rows // size) * size
        self.pending, self.rows = [rows.slice(full)], rows.num_rows - full
        return [rows.slice(start, size) for start in range(0, full, size)]

    def flush(self) -> list[pa.Table]:
        pending, rows = self.pending, self.rows
        self.pending, self.rows = [], 0
        return [pa.concat_tables(pending).combine_chunks()] if rows else []


class ShardWriter:
    """Streams rows into `directory/side-NNNNN-of-NNNNN.arrow` shards.

    Rows are regrouped into record batches of exactly ROWS_PER_BATCH (the last may be shorter) and a
    shard is closed once it reaches `max_bytes`, so the files depend only on the rows. Shards are
    written under temporary names and renamed at `close`, when their count is known."""

    def __init__(self, directory: Path, side: str, schema: pa.Schema, metadata: dict, max_bytes: int):
        self.directory, self.side, self.schema, self.metadata, self.max_bytes = directory, side, schema, metadata, max_bytes
        self.batches = _Rebatcher()
        self.paths: list[Path] = []
        self.rows: list[int] = []  # rows per shard
        self.sink = self.writer = None

    def write(self, table: pa.Table) -> None:
        for batch in self.batches.push(table):
            self._emit(batch)

    def _emit(self, rows: pa.Table) -> None:
        if self.writer is None:
            path = self.directory / f".{self.side}-{len(self.paths):05d}.tmp"
            meta = json.dumps({**self.metadata, "shard": len(self.paths)}, sort_keys=True).encode()
            self.sink = pa.OSFile(str(path), "wb")
            self.writer = pa.ipc.new_file(self.sink, self.schema.with_metadata({METADATA_KEY: meta}))
            self.paths.append(path)
            self.rows.append(0)
        self.rows[-1] += rows.num_rows
        for batch in rows.to_batches():
            self.writer.write_batch(batch)
        if self.sink.tell() >= self.max_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        self.writer.close()
        self.sink.close()
        self.writer = self.sink = None

    def close(self) -> list[Path]:
        """Flush, close and rename; returns the final shard paths."""
        for batch in self.batches.flush():
            self._emit(batch)
        if self.writer is not None:
            self._close_shard()
        final = []
        for index, tmp in enumerate(self.paths):
            path = self.directory / shard_name(self.side, index, len(self.paths))
            os.replace(tmp, path)
            final.append(path)
        return final


class ArrowFile:
    """An Arrow IPC file written batch by batch under a temporary name and renamed on `close`, so a
    killed run never leaves a partial file under the final name."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_batch: int | None = None, compression: str | None = None):
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.sink = pa.OSFile(str(self.tmp), "wb")
        self.writer = pa.ipc.new_file(self.sink, schema, options=pa.ipc.IpcWriteOptions(compression=compression))
        self.batches = _Rebatcher(rows_per_batch)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for batch in self.batches.push(table):
            self.writer.write_table(batch)

    def close(self) -> Path:
        for batch in self.batches.flush():
            self.writer.write_table(batch)
        self.writer.close()
        self.sink.close()
        os.replace(self.tmp, self.path)
        return self.path


def batch_starts(rows: int, rows_per_batch: int) -> np.ndarray:
    """First row of each record batch of a file written with exact `rows_per_batch` batches, then the total."""
    return np.append(np.arange(0, rows, rows_per_batch, dtype=np.int64), rows)


def take_rows(path: Path, starts: np.ndarray, index: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Copies of the rows at `index` (in that order) of an Arrow file whose batches begin at `starts`.

    Rows are taken batch by batch: Arrow's take on a many-chunk table first concatenates every chunk,
    i.e. copies the whole file. There is one Arrow call per touched batch, so very small batches make
    random-order reads slow. Every page read through a map counts in the process's memory while the
    map lives, and the kernel maps the cached pages around each one read (fault-around, 64 KiB): so
    the file is mapped afresh for every ROWS_PER_MAP rows taken, which bounds those pages whatever
    the file size."""
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return schema.empty_table()
    batch = np.searchsorted(starts, index, side="right") - 1
    order = np.argsort(batch, kind="stable")
    batches, rows = batch[order], index[order]
    cuts = np.flatnonzero(np.diff(batches)) + 1
    pieces, reader, mapped = [], None, 0
    for b, group in zip(batches[np.r_[0, cuts]], np.split(rows, cuts)):
        if reader is None or mapped >= ROWS_PER_MAP:
            reader, mapped = pa.ipc.open_file(pa.memory_map(str(path))), 0  # drops the previous map
        pieces.append(reader.get_batch(int(b)).take(pa.array(group - starts[b])))
        mapped += len(group)
    taken = pa.Table.from_batches(pieces, schema=schema).combine_chunks()
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    return taken.take(pa.array(restore))


def file_record(root: Path, path: Path, rows: int) -> dict:
    """What the manifest vouches for about one written file."""
    return {"file": path.relative_to(root).as_posix(), "rows": rows, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
