"""Stage 5 of prepare, write: each phase part's tokenized chunks (stage 4) into its shards, blended when
several datasets (or weights) feed it, with every row counted; and the text tables, normalized/ (the
rows each phase was cut from) and dropped/ (every dropped row, with its reason).

Several datasets are blended as DeepSpeed-Chat blends them: each dataset's part goes to a staging
file, then one seeded shuffle over their concatenation decides the shard order (blend.py: with
weights, seeded quota samples first; SFT-only data appended and reshuffled).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from dataprep import blend, faults, shards
from dataprep.errors import DataprepError
from dataprep.format import DROPPED_SCHEMA, FORMAT_VERSION, NORMALIZED_SCHEMA, TOKEN_COLUMNS, part_dir, schema, token_lengths, token_type
from dataprep.options import PrepareOptions
from dataprep.phases import length_stats, tokenize_part
from dataprep.plan import DatasetSplit
from dataprep.pool import POOL_BATCH_ROWS, Pool, dropped_rows
from dataprep.tokenizer import Tokenizer

TEXT_BATCH_ROWS = 1024  # rows per record batch of normalized/ and dropped/ (large text rows; a batch is buffered)
TAKE_CHUNK = 1024  # rows per read when blending and when writing left-out rows


def metadata_for(tokenizer: Tokenizer, **extra) -> dict:
    """What every shard's schema metadata says about itself (format.METADATA_KEY)."""
    return {"format_version": FORMAT_VERSION, "tokenizer_fingerprint": tokenizer.fingerprint, "eos_id": tokenizer.eos_id,
            "bos_id": tokenizer.bos_id, "pad_id": tokenizer.pad_id, **extra}


class TextTables:
    """A dataset's normalized/ table, written whole at once, and its dropped/ table, which takes the rows
    dropped while parsing now and each phase's drops as its parts are written."""

    def __init__(self, staging: Path, pool: Pool, split: DatasetSplit):
        self.staging = staging
        normalized = shards.ArrowFile(staging / "normalized" / f"{pool.name}.arrow", NORMALIZED_SCHEMA, TEXT_BATCH_ROWS, "zstd")
        self.drops = shards.ArrowFile(staging / "dropped" / f"{pool.name}.arrow", DROPPED_SCHEMA, TEXT_BATCH_ROWS, "zstd")
        for kept, dropped in pool.annotated(split.side_of, split.phase_of):
            normalized.write(kept)
            self.drops.write(dropped)
        self.normalized = shards.file_record(staging, normalized.close(), normalized.rows)
        faults.checkpoint("normalized")

    def add_drops(self, rows: pa.Table, side: str, phase: int, reasons: list[str]) -> None:
        """Phase-level drops: the pool rows, where they were headed, and why."""
        rows = rows.append_column("side", pa.array([side] * rows.num_rows, pa.string()))
        rows = rows.append_column("phase", pa.array([phase] * rows.num_rows, pa.int8()))
        self.drops.write(dropped_rows(rows, reasons))

    def close(self) -> dict:
        """The dropped/ table's manifest record."""
        return shards.file_record(self.staging, self.drops.close(), self.drops.rows)


@dataclass(frozen=True)
class Member:
    """One dataset's share of a phase part."""

    pool: Pool
    rows: np.ndarray  # pool positions, in the split's order
    tables: TextTables  # where its drops go


@dataclass(frozen=True)
class PartResult:
    """What one phase and side holds, and how every row that was headed there was counted."""

    rows_in: int
    kept: int
    dropped: dict[str, int]
    repeated: int  # rows a weighted blend repeats: rows_in + repeated = kept + dropped
    truncated: int
    by_dataset: dict[str, dict]  # name -> rows_in, kept, dropped (and the quota record when weighted)
    tokens: dict[str, dict]  # token column -> length_stats
    shards: list[dict]  # manifest records

    def record(self) -> dict:
        return {"rows_in": self.rows_in, "kept": self.kept, "dropped": self.dropped, "repeated": self.repeated,
                "truncated": self.truncated, "by_dataset": self.by_dataset, "tokens": self.tokens, "shards": self.shards}


def write_part(phase: int, side: str, members: list[Member], tokenizer: Tokenizer, opts: PrepareOptions, staging: Path,
               mix: blend.Mix) -> PartResult:
    """Tokenize every member's part of one phase and side, blend, and stream the rows into shards."""
    ids = token_type(tokenizer.vocab_size)
    part_schema = schema(phase, ids)
    meta = metadata_for(tokenizer, phase=phase, side=side, max_seq_len=opts.max_seq_len, max_prompt_len=opts.max_prompt_len)
    writer = shards.ShardWriter(staging / part_dir(phase), side, part_schema, meta, opts.shard_bytes)
    lengths: dict[str, list[np.ndarray]] = {c: [] for c in TOKEN_COLUMNS[phase]}

    def emit(table: pa.Table) -> None:  # token lengths of what the shards hold, repeats included
        for column in lengths:
            lengths[column].append(token_lengths(table.column(column)))
        writer.write(table)

    staged = None
    if len(members) > 1 or mix.weights is not None:
        staged = shards.ArrowFile(staging / f".blend-{phase}-{side}.arrow", part_schema, rows_per_batch=POOL_BATCH_ROWS)
    by_dataset, kept_at, truncated = {}, [], 0
    bar = tqdm(total=sum(len(m.rows) for m in members), desc=f"phase {phase} {side}", unit="row", disable=None if opts.progress else True)
    for member in members:
        counts: Counter[str] = Counter()
        positions = []
        for chunk in tokenize_part(phase, member.pool, member.rows, tokenizer, opts.max_seq_len, opts.max_prompt_len):
            counts.update(chunk.parse_drops)
            if chunk.reasons:
                member.tables.add_drops(chunk.dropped, side, phase, chunk.reasons)
                counts.update(chunk.reasons)
            (staged.write if staged else emit)(chunk.table)
            positions.append(chunk.positions)
            truncated += chunk.truncated
            bar.update(chunk.rows_in)
        kept = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        by_dataset[member.pool.name] = {"rows_in": len(member.rows), "kept": len(kept), "dropped": dict(sorted(counts.items()))}
        kept_at.append(kept)
    bar.close()
    if staged:
        _blend(phase, side, staged, members, kept_at, by_dataset, part_schema, emit, opts.seed, mix)
    dropped: Counter[str] = Counter()
    for info in by_dataset.values():
        dropped.update(info["dropped"])
    kept_total = sum(info["kept"] for info in by_dataset.values())
    if kept_total == 0:
        raise DataprepError(
            f"phase {phase} {side}: no rows left after drops ({', '.join(f'{k} {v}' for k, v in dropped.items()) or 'none dropped'}); "
            "use more data, a longer --max-seq-len/--max-prompt-len, or weight 0 for this phase"
        )
    paths = writer.close()
    faults.checkpoint("shard")
    return PartResult(
        rows_in=sum(info["rows_in"] for info in by_dataset.values()),
        kept=kept_total,
        dropped=dict(sorted(dropped.items())),
        repeated=sum(info.get("repeated", 0) for info in by_dataset.values()),
        truncated=truncated,
        by_dataset=by_dataset,
        tokens={c: length_stats(np.concatenate(v)) for c, v in lengths.items()},
        shards=[shards.file_record(staging, p, n) for p, n in zip(paths, writer.rows)],
    )


def _blend(phase: int, side: str, staged: shards.ArrowFile, members: list[Member], kept_at: list[np.ndarray], by_dataset: dict,
           part_schema: pa.Schema, emit: Callable[[pa.Table], None], seed: int, mix: blend.Mix) -> None:
    """Stream the staged parts into the shards in the blend's order (blend.plan). When weighted, each
    dataset's record gets its quota; rows left out are dropped as `over_quota` (and written to
    dropped/), repeats are counted as `repeated`."""
    path, rows = staged.close(), staged.rows
    names = [m.pool.name for m in members]
    order = blend.plan(seed, phase, side, names, [len(k) for k in kept_at], mix)
    starts = shards.batch_starts(rows, POOL_BATCH_ROWS)
    for start in range(0, len(order.order), TAKE_CHUNK):
        emit(shards.take_rows(path, starts, order.order[start : start + TAKE_CHUNK], part_schema))
    path.unlink()
    for i, record in enumerate(order.records or []):
        info = by_dataset[names[i]]
        info.update(kept=record["quota"], repeated=record["repeated"], blend=record)
        if record["left_out"]:
            info["dropped"] = dict(sorted({**info["dropped"], "over_quota": record["left_out"]}.items()))
            left = kept_at[i][order.left_out[i]]
            for start in range(0, len(left), TAKE_CHUNK):
                chunk = members[i].pool.take(left[start : start + TAKE_CHUNK])
                members[i].tables.add_drops(chunk, side, phase, ["over_quota"] * chunk.num_rows)
