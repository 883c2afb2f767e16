"""Arrow IPC *file* shards: random access, memory-mapped, zero copy.

A shard is `phaseP/{train,eval}-NNNNN-of-NNNNN.arrow`: record batches of unpadded `list<int32>` token
columns (one offsets array and one flat values buffer per column, the layout of Megatron's .bin/.idx).
The schema metadata key `dataprep` holds JSON naming the phase, side, tokenizer fingerprint and
special-token ids, so a shard explains itself without the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa

from dataprep.errors import DataprepError

METADATA_KEY = b"dataprep"
ROWS_PER_BATCH = 4096
DEFAULT_SHARD_BYTES = 256 << 20


def shard_name(side: str, index: int, count: int) -> str:
    return f"{side}-{index:05d}-of-{count:05d}.arrow"


def plan_shards(token_counts: list[int], max_bytes: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) so that each shard holds at most ~max_bytes of int32 tokens.
    Depends only on the data, so the same rows always give the same shard boundaries."""
    ranges, start, size = [], 0, 0
    for row, n in enumerate(token_counts):
        if size and size + 4 * n > max_bytes:
            ranges.append((start, row))
            start, size = row, 0
        size += 4 * n
    ranges.append((start, len(token_counts)))
    return ranges


def write_arrow(path: Path, table: pa.Table, metadata: dict | None = None) -> None:
    """Write `table` as an Arrow IPC file through a temporary name, so a killed run never leaves a
    partial file under the final name. `metadata` (shards only) goes into the schema."""
    schema = table.schema
    if metadata is not None:
        schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in table.combine_chunks().to_batches(max_chunksize=ROWS_PER_BATCH):
            writer.write_batch(batch)
    os.replace(tmp, path)


def open_shard(path: Path) -> pa.Table:
    """Memory-map a shard; the returned table's buffers point into the page cache (no copy)."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        return reader.read_all()
    except FileNotFoundError:
        raise DataprepError(f"{path}: no such file") from None
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DataprepError(f"{path}: not a readable Arrow shard ({str(exc).splitlines()[0]}); it may be truncated or corrupt") from None


def shard_metadata(table_or_schema: pa.Table | pa.Schema, path: Path) -> dict:
    schema = table_or_schema if isinstance(table_or_schema, pa.Schema) else table_or_schema.schema
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataprepError(f"{path}: an Arrow file but not a dataprep shard (no '{METADATA_KEY.decode()}' schema metadata)")
    return json.loads(raw)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
