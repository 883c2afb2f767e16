"""Stage 4 of prepare, tokenize: canonical text rows -> unpadded token columns, as DeepSpeed-Chat builds them.

  phase 1 (SFT)     input_ids = tokens(prompt + chosen) + [EOS], prompt_len, loss_mask (loss_mask.py)
  phase 2 (reward)  chosen_input_ids, rejected_input_ids = tokens(prompt + response) + [EOS], prompt_len,
                    chosen_score, rejected_score (the graders', null where the data has none)
  phase 3 (PPO)     prompt_input_ids = tokens(prompt); longer than --max-prompt-len: dropped

Token ids are what the tokenizer gives for the whole text (special tokens included), so they equal
DeepSpeed-Chat's ids before padding. Differences from DeepSpeed-Chat, each on purpose:
  * EOS is appended as its id in phases 1 and 2 (DeepSpeed-Chat appends the *string* "<|endoftext|>"
    in phase 2, which most non-GPT-2 vocabularies split into several ordinary tokens).
  * Truncation at --max-seq-len keeps the start, as there; a pair whose two sides become identical after
    truncation carries no preference signal and is dropped (`identical_after_truncation`).
  * `prompt_len` (tokens of the prompt, found in token space) is stored for optional prompt masking.
Every row goes in; each comes out either as a kept row or with a drop reason. A ranking's later pairs
(pool.Pool.later) are dropped from phases 1 and 3 as `later_pair`: those phases take one row per prompt.

`tokenize_part` streams one dataset's part of a phase and side out of its pool (stage 2) in the
split's order (stage 3), chunk by chunk, for stage 5 (write.py) to write.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import memory
from dataprep.format import LOSS_MASK, PROMPT_LEN_PHASES, SCORE_COLUMNS, SCORE_PHASES, TOKEN_COLUMNS, schema, token_type
from dataprep.loss_mask import row_spans, token_mask
from dataprep.pool import Pool, count_reasons
from dataprep.tokenizer import Tokenizer

ENCODE_CHUNK = 1024  # rows per tokenizer call: large enough for the Rust thread pool, small for progress
TRIM_EVERY = 4  # chunks between returns of freed heap memory to the system (memory.py)


@dataclass
class Encoded:
    """Tokenized rows of one phase part: `table` holds the kept rows; `dropped` maps a row's position in
    the input to its reason; `truncated` counts kept rows cut at --max-seq-len (_finish)."""

    table: pa.Table
    dropped: dict[int, str] = field(default_factory=dict)
    truncated: int = 0


def encode_phase(
    phase: int,
    tokenizer: Tokenizer,
    rows: pa.Table,
    max_seq_len: int,
    max_prompt_len: int,
) -> Encoded:
    """`rows` has row_id, source, prompt, chosen, rejected (all kept by normalization)."""
    prompts = rows.column("prompt").to_pylist()
    out = {name: [] for name in TOKEN_COLUMNS[phase]}
    prompt_lens: list[int] = []
    loss_masks: list[np.ndarray] = []
    keep: list[int] = []
    dropped: dict[int, str] = {}
    truncated = 0

    if phase == 1:
        answers, recorded = rows.column("chosen").to_pylist(), rows.column("assistant_spans").to_pylist()
        masks = []
        if tokenizer.encode_with_offsets is not None:
            ids, plen, offsets = tokenizer.encode_with_offsets(prompts, answers)
            for i in range(len(ids)):
                masks.append(token_mask(offsets[i], row_spans(prompts[i], answers[i], recorded[i])))
        else:  # no character offsets (a slow tokenizer): the final answer alone is marked
            (ids, plen), = tokenizer.encode_joined(prompts, [answers])
            masks = [np.arange(len(seq)) >= n for seq, n in zip(ids, plen)]
        for i, (seq, n, mask) in enumerate(zip(ids, plen, masks)):
            seq, cut = _finish(seq, tokenizer.eos_id, max_seq_len)
            truncated += cut
            out["input_ids"].append(seq)
            loss_masks.append(np.append(mask, 1)[: len(seq)].astype(np.uint8))  # the EOS ends the final answer
            prompt_lens.append(min(n, len(seq)))
            keep.append(i)
    elif phase == 2:
        chosen, rejected = rows.column("chosen").to_pylist(), rows.column("rejected").to_pylist()
        pairs = [i for i, r in enumerate(rejected) if r is not None]
        dropped.update({i: "no_rejected" for i, r in enumerate(rejected) if r is None})
        # One prompt, two responses: the prompt is tokenized once where that gives the same ids.
        (c_ids, c_len), (r_ids, r_len) = tokenizer.encode_joined(
            [prompts[i] for i in pairs], [[chosen[i] for i in pairs], [rejected[i] for i in pairs]])
        for i, c, r, cn, rn in zip(pairs, c_ids, r_ids, c_len, r_len):
            c, c_cut = _finish(c, tokenizer.eos_id, max_seq_len)
            r, r_cut = _finish(r, tokenizer.eos_id, max_seq_len)
            if c == r:
                dropped[i] = "identical_after_truncation"
                continue
            truncated += c_cut or r_cut
            out["chosen_input_ids"].append(c)
            out["rejected_input_ids"].append(r)
            prompt_lens.append(min(cn, rn, len(c), len(r)))
            keep.append(i)
    else:
        for i, seq in enumerate(tokenizer.encode(prompts)):
            if len(seq) > max_prompt_len:
                dropped[i] = "prompt_too_long"
                continue
            out["prompt_input_ids"].append(seq)
            keep.append(i)

    ids = token_type(tokenizer.vocab_size)
    keep_index = np.asarray(keep, dtype=np.int64)
    columns = {"row_id": rows.column("row_id").take(keep_index), "source": rows.column("source").take(keep_index)}
    columns.update({name: _token_array(values, ids) for name, values in out.items()})
    if phase in PROMPT_LEN_PHASES:
        columns["prompt_len"] = pa.array(prompt_lens, pa.int32())
    if phase == 1:
        columns[LOSS_MASK] = _token_array(loss_masks, pa.uint8())
    if phase in SCORE_PHASES:
        for name in SCORE_COLUMNS:
            scores = rows.column(name).take(keep_index) if name in rows.column_names else pa.nulls(len(keep), pa.float64())
            columns[name] = scores.cast(pa.float32())
    table = pa.table(columns, schema=schema(phase, ids))
    return Encoded(table, dict(sorted(dropped.items())), truncated)


def _finish(ids: list[int], eos_id: int, max_len: int) -> tuple[list[int], bool]:
    """The row's ids with EOS, cut at max_len, and whether it counts as truncated: cut and not ending in
    EOS. A row cut right after a literal EOS in its text ends like a whole row, and its shard cannot
    tell them apart; it counts as whole here (the manifest), as in `inspect` (inspect_dir.py)."""
    ids = ids + [eos_id]
    if len(ids) <= max_len:
        return ids, False
    return ids[:max_len], ids[max_len - 1] != eos_id


def _token_array(rows: list, ids: pa.DataType) -> pa.Array:
    """A list array built from one flat buffer and offsets (no per-row Arrow objects)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(chain.from_iterable(rows), dtype=np.dtype(str(ids)), count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=ids))


def length_stats(lengths: np.ndarray) -> dict:
    """min / mean / p50 / p95 / max / total of token lengths."""
    if lengths.size == 0:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0, "total": 0}
    return {
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 2),
        "p50": int(np.percentile(lengths, 50, method="lower")),
        "p95": int(np.percentile(lengths, 95, method="lower")),
        "max": int(lengths.max()),
        "total": int(lengths.sum()),
    }


@dataclass
class Chunk:
    """One chunk of a dataset's phase part, tokenized."""

    rows_in: int
    parse_drops: dict[str, int]  # rows dropped while parsing (already in dropped/), by reason
    table: pa.Table  # the kept rows, in the phase's schema
    positions: np.ndarray  # pool positions of the kept rows, in table order
    dropped: pa.Table  # pool rows this phase drops ...
    reasons: list[str]  # ... and why
    truncated: int  # kept rows cut at --max-seq-len


def tokenize_part(phase: int, pool: Pool, index: np.ndarray, tokenizer: Tokenizer, max_seq_len: int, max_prompt_len: int) -> Iterator[Chunk]:
    """The pool rows at `index`, in that order, tokenized chunk by chunk."""

    def encode(positions: np.ndarray) -> Chunk:
        rows = pool.take(positions)
        parsed = pc.is_null(rows.column("drop_reason"))
        parse_drops = count_reasons(rows.column("drop_reason"))
        kept_at, rows = positions[parsed.to_numpy(zero_copy_only=False)], rows.filter(parsed)
        later = pool.later[kept_at] if phase != 2 else np.zeros(len(kept_at), bool)  # phases 1 and 3: one row per ranked prompt
        repeats, rows, kept_at = rows.filter(pa.array(later)), rows.filter(pa.array(~later)), kept_at[~later]
        encoded = encode_phase(phase, tokenizer, rows, max_seq_len, max_prompt_len)
        where = np.fromiter(encoded.dropped, np.int64, len(encoded.dropped))
        dropped = pa.concat_tables([repeats, rows.take(pa.array(where))])
        reasons = ["later_pair"] * repeats.num_rows + list(encoded.dropped.values())
        return Chunk(len(positions), parse_drops, encoded.table, np.delete(kept_at, where), dropped, reasons, encoded.truncated)

    chunks = (index[start : start + ENCODE_CHUNK] for start in range(0, len(index), ENCODE_CHUNK))
    for done, result in enumerate(_in_order(encode, chunks), 1):
        if done % TRIM_EVERY == 0:
            memory.release()
        yield result


def _in_order(fn: Callable, items, depth: int = 2):
    """fn over items on `depth` threads, results in input order, at most `depth` in flight. The
    tokenizer releases the GIL, so one chunk's Rust encoding overlaps the next chunk's Python work;
    results are consumed in order, so the output does not depend on the timing."""
    with ThreadPoolExecutor(depth) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
