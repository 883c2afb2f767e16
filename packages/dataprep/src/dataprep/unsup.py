"""Stages 4 and 5 for phase 3's unsupervised (PTX) data: plain-text documents -> fixed-length token blocks.

`dataprep prepare --unsup PATH ...` reads every document of PATH (local files or directories: the
`text` column, else the first string column), tokenizes it as the tokenizer does (special tokens
included, as DeepSpeed-Chat's `tokenizer(batch[text])`), appends EOS, concatenates the documents in
file order and cuts the stream into rows of exactly --unsup-block tokens (DeepSpeed-Chat's block is
max_prompt_seq_len + max_answer_seq_len = 512). Rows go to OUT/unsup/train-*.arrow: `row_id` is the
block's index, `source` the file its first token came from, `input_ids` the block; the trainer's
labels are the ids themselves, as in DeepSpeed-Chat.

Differences from DeepSpeed-Chat's `group_texts` (dschat.md 3.5), on purpose:
  * one stream over all documents: only the final partial block is dropped (counted as `tail_tokens`),
    not one remainder per 1,000-document map batch, and no ragged short block that the collator
    cannot stack;
  * EOS after every document marks its end (DeepSpeed-Chat relies on BOS, which GPT-2-style
    tokenizers never add, so their documents run into each other);
  * an empty or whitespace-only document is skipped and counted (`empty_text`), not turned into a
    lone BOS; a null or non-string text is counted as `missing_field` / `wrong_type`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import faults, readers, shards
from dataprep.errors import DataprepError
from dataprep.format import UNSUP, part_dir, schema, token_type
from dataprep.inputs import Input
from dataprep.phases import length_stats
from dataprep.tokenizer import Tokenizer
from dataprep.write import metadata_for

TEXT_COLUMN = "text"
ENCODE_CHUNK = 2048


def build(inputs: list[Input], tokenizer: Tokenizer, block: int, staging: Path, shard_bytes: int, strict: bool) -> dict:
    """Write the blocks under `staging/unsup/`; returns the manifest's `unsup` record."""
    ids = token_type(tokenizer.vocab_size)
    directory = staging / part_dir(UNSUP)
    directory.mkdir()
    meta = {**metadata_for(tokenizer), "phase": UNSUP, "side": "train", "block": block}
    writer = shards.ShardWriter(directory, "train", schema(UNSUP, ids), meta, shard_bytes)
    stream = _BlockStream(block, np.dtype(str(ids)))
    rows_in, kept, dropped = 0, 0, {}
    for input_ in inputs:
        for file in input_.dataset.files:
            for texts in _texts(file.path, strict):
                rows_in += len(texts)
                usable = [t for t in texts if isinstance(t, str) and t.strip()]
                for reason, n in _reasons(texts).items():
                    dropped[reason] = dropped.get(reason, 0) + n
                kept += len(usable)
                for start in range(0, len(usable), ENCODE_CHUNK):
                    for seq in tokenizer.encode(usable[start : start + ENCODE_CHUNK]):
                        stream.add(seq + [tokenizer.eos_id])
                    table = stream.blocks(file.source, ids)
                    if table is not None:
                        writer.write(table)
    if stream.emitted == 0:
        raise DataprepError(
            f"--unsup: {stream.tokens} tokens in {kept} documents do not fill one block of {block}; "
            "give more text or a smaller --unsup-block"
        )
    paths = writer.close()
    faults.checkpoint("shard")
    return {
        "inputs": [{**d.record(), "role": d.role} for d in inputs],
        "block": block,
        "rows_in": rows_in,
        "kept": kept,
        "dropped": dict(sorted(dropped.items())),
        "blocks": stream.emitted,
        "tail_tokens": stream.pending_tokens,
        "tokens": length_stats(np.full(stream.emitted, block)),
        "shards": [shards.file_record(staging, p, n) for p, n in zip(paths, writer.rows)],
    }


class _BlockStream:
    """Token ids in, exact `block`-sized rows out, in order; the partial block waits for more."""

    def __init__(self, block: int, dtype: np.dtype):
        self.block, self.dtype = block, dtype
        self.pending: list[np.ndarray] = []
        self.pending_tokens = self.emitted = self.tokens = 0

    def add(self, ids: list[int]) -> None:
        self.pending.append(np.asarray(ids, dtype=self.dtype))
        self.pending_tokens += len(ids)
        self.tokens += len(ids)

    def blocks(self, source: str, ids: pa.DataType) -> pa.Table | None:
        """Every complete block so far as a table, or None."""
        n = self.pending_tokens // self.block
        if n == 0:
            return None
        flat = np.concatenate(self.pending)
        rest = flat[n * self.block :]
        self.pending, self.pending_tokens = [rest], len(rest)
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * self.block)
        table = pa.table(
            {
                "row_id": pa.array(np.arange(self.emitted, self.emitted + n, dtype=np.int64)),
                "source": pa.array([source] * n, pa.string()),
                "input_ids": pa.ListArray.from_arrays(offsets, pa.array(flat[: n * self.block], type=ids)),
            },
            schema=schema(UNSUP, ids),
        )
        self.emitted += n
        return table


def _texts(path: Path, strict: bool):
    """Each batch of `path` as a list of text values (None for null or not a string)."""
    column = None
    for table in readers.iter_tables(path, string_fields=(TEXT_COLUMN,), strict=strict):
        if column is None:
            column = TEXT_COLUMN if TEXT_COLUMN in table.column_names else next(
                (f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)), None)
            if column is None:
                raise DataprepError(f"{path}: no '{TEXT_COLUMN}' column and no other string column (found: {', '.join(table.column_names)}); "
                                    "--unsup reads plain-text documents")
        values = table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
        if readers.INVALID in table.column_names:
            invalid = table.column(readers.INVALID)
            values = [_WRONG if bad else v for v, bad in zip(values, pc.is_valid(invalid).to_pylist())]
        yield values


_WRONG = object()  # a text value that is not a string


def _reasons(texts: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in texts:
        reason = "missing_field" if t is None else "wrong_type" if t is _WRONG else "empty_text" if not t.strip() else None
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    return counts
