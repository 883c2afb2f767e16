"""The shard contract: what a prepared directory holds and what every reader may rely on.

This module and the package top level are the public face of `dataprep`'s output. The trainer,
`inspect`, `verify` and users' own code read prepared data through it and through nothing else.

    DIR/manifest.json                              sealed record: inputs, options, tokenizer, counts, sha256 of every file
    DIR/phase1/{train,eval}-NNNNN-of-NNNNN.arrow   SFT:    row_id, source, input_ids, prompt_len
    DIR/phase2/...                                 reward: row_id, source, chosen_input_ids, rejected_input_ids, prompt_len,
                                                           chosen_score, rejected_score
    DIR/phase3/...                                 PPO:    row_id, source, prompt_input_ids
    DIR/unsup/train-NNNNN-of-NNNNN.arrow           PTX:    row_id, source, input_ids (fixed-length blocks)
    DIR/normalized/NAME.arrow                      canonical text rows with their side and phase
    DIR/dropped/NAME.arrow                         every dropped row with its reason

Shards are Arrow IPC *files* (random access, memory-mapped, zero copy). Token columns are unpadded
lists of `uint16` (vocabularies of at most 65,536 entries) or `int32`. The schema metadata key
`dataprep` holds JSON naming the phase, side, shard index, tokenizer fingerprint, special-token ids
and length limits, so a shard explains itself without the manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.errors import DataprepError

# Bumped whenever the bytes written for the same inputs and options change; part of the cache key.
FORMAT_VERSION = 2  # 2: phase 1's loss_mask, and the graders' scores in phase-2 shards and normalized/

PHASES = (1, 2, 3)
UNSUP = "unsup"  # phase 3's unsupervised (PTX) blocks: a part of its own, train side only
Part = Union[int, str]  # a phase (1, 2, 3) or UNSUP
SIDES = ("train", "eval")
SIDE_CODE = {"train": 0, "eval": 1}  # how per-row side arrays store a side

MANIFEST = "manifest.json"
METADATA_KEY = b"dataprep"
TEXT_TABLES = ("normalized", "dropped")

TOKEN_COLUMNS: dict[Part, tuple[str, ...]] = {
    1: ("input_ids",),
    2: ("chosen_input_ids", "rejected_input_ids"),
    3: ("prompt_input_ids",),
    UNSUP: ("input_ids",),
}
# Phases 1 and 2: tokens of the prompt at the start of each row (phase 2: the smaller of its two sides).
PROMPT_LEN_PHASES = (1, 2)
# Phase 1: per token of input_ids, 1 where it belongs to an assistant turn (every one, the final answer
# and its EOS included), else 0. Trainers that learn the final answer alone use prompt_len instead.
LOSS_MASK = "loss_mask"
# Phase 2: the graders' scores of the two responses (float32; null where the data has none), for
# margins and filters. Token ids do not depend on them.
SCORE_COLUMNS = ("chosen_score", "rejected_score")
SCORE_PHASES = (2,)

# normalized/: the rows every phase was cut from, where each went, and the group --split-by prompt used.
NORMALIZED_SCHEMA = pa.schema(
    [("row_id", pa.int64()), ("source", pa.string()), ("prompt", pa.string()), ("chosen", pa.string()),
     ("rejected", pa.string()), ("group", pa.string()), ("side", pa.string()), ("phase", pa.int8()),
     ("chosen_score", pa.float64()), ("rejected_score", pa.float64())]
)
# dropped/: which row, where it was headed, why, and its text; `detail` (null for most reasons) says
# which row a `duplicate` copies and which n-gram made a row `contaminated`.
DROPPED_SCHEMA = pa.schema(
    [("row_id", pa.int64()), ("source", pa.string()), ("side", pa.string()), ("phase", pa.int8()), ("reason", pa.string()),
     ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()), ("detail", pa.string())]
)


def part_dir(part: Part) -> str:
    """The output subdirectory of a part's shards: phase1..phase3, or unsup."""
    return UNSUP if part == UNSUP else f"phase{part}"


PART_DIRS = tuple(part_dir(p) for p in (*PHASES, UNSUP))


def shard_name(side: str, index: int, count: int) -> str:
    return f"{side}-{index:05d}-of-{count:05d}.arrow"


def token_type(vocab_size: int) -> pa.DataType:
    """The narrowest id type for the vocabulary: 16-bit ids halve the shards of most vocabularies."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.int32()


def schema(part: Part, ids: pa.DataType) -> pa.Schema:
    """The columns of a part's shards, in order."""
    columns = [pa.field("row_id", pa.int64()), pa.field("source", pa.string())]
    columns += [pa.field(name, pa.list_(ids)) for name in TOKEN_COLUMNS[part]]
    if part in PROMPT_LEN_PHASES:
        columns.append(pa.field("prompt_len", pa.int32()))
    if part == 1:
        columns.append(pa.field(LOSS_MASK, pa.list_(pa.uint8())))
    if part in SCORE_PHASES:
        columns += [pa.field(name, pa.float32()) for name in SCORE_COLUMNS]
    return pa.schema(columns)


# -- the manifest, read side ---------------------------------------------------------------------


def sha256_json(value) -> str:
    """sha256 of a JSON value with sorted keys: the manifest's seal and the cache key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def content_hash(data: dict) -> str:
    """The manifest's seal: a sha256 over everything but the seal itself and `run` (time, duration)."""
    return sha256_json({k: v for k, v in data.items() if k not in ("run", "content_sha256")})


@dataclass(frozen=True)
class TokenizerInfo:
    """The tokenizer the shards were made with, as the manifest records it."""

    spec: str  # what was passed to --tokenizer
    load: str  # what reloads it: an absolute path for local tokenizers, else the hub id
    kind: str  # "tokenizers" | "transformers" | "sentencepiece"
    revision: str | None
    files: list[str]  # absolute paths of the files that define it
    fingerprint: str  # sha256 of what decides the ids, and the eos/bos ids
    eos_id: int
    bos_id: int | None
    pad_id: int | None
    vocab_size: int
    token_type: str  # "uint16" | "int32"

    @property
    def pad_or_eos(self) -> int:
        """The id to pad batches with: the pad id, or EOS where there is none (attention masks mark padding)."""
        return self.pad_id if self.pad_id is not None else self.eos_id


class Manifest:
    """A prepared directory's manifest.json, read and typed where readers need it. `data` is the JSON."""

    def __init__(self, out: Path, data: dict):
        self.out, self.data = Path(out), data

    @classmethod
    def read(cls, out: Path | str) -> "Manifest":
        path = Path(out) / MANIFEST
        try:
            return cls(Path(out), json.loads(path.read_text()))
        except FileNotFoundError:
            raise DataprepError(f"{path}: no manifest; {out} is not a finished `dataprep prepare` output (killed or still running? rerun prepare)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataprepError(f"{path}: not valid JSON ({exc}); rerun prepare") from None

    def __getitem__(self, key: str):
        """The manifest's JSON, top level: `manifest["phases"]`, as the file reads."""
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    @property
    def sealed(self) -> bool:
        """True when the manifest is exactly what prepare wrote (its content hash matches)."""
        return self.data.get("content_sha256") == content_hash(self.data)

    def require_sealed(self) -> None:
        """Refuse a manifest edited after prepare wrote it."""
        if not self.sealed:
            raise DataprepError(f"{self.out / MANIFEST}: edited after prepare wrote it (its content hash does not match); rerun dataprep prepare")

    @property
    def tokenizer(self) -> TokenizerInfo:
        raw = self.data["tokenizer"]
        return TokenizerInfo(**{f.name: raw[f.name] for f in fields(TokenizerInfo)})

    @property
    def max_seq_len(self) -> int:
        return self.data["options"]["max_seq_len"]

    @property
    def max_prompt_len(self) -> int:
        return self.data["options"]["max_prompt_len"]

    def part(self, part: Part, side: str) -> dict | None:
        """The record (counts and shards) of one part and side, or None when it was not built."""
        if part == UNSUP:
            return self.data.get(UNSUP) if side == "train" else None
        return self.data.get("phases", {}).get(str(part), {}).get(side)

    def parts(self) -> Iterator[tuple[Part, str, dict]]:
        """(part, side, record) of every built part: phases 1-3 by side, then the unsup blocks."""
        for phase, sides in self.data.get("phases", {}).items():
            for side, info in sides.items():
                yield int(phase), side, info
        if UNSUP in self.data:
            yield UNSUP, "train", self.data[UNSUP]

    def files(self) -> list[dict]:
        """Every output file the manifest vouches for (shards and tables), each with file, rows, bytes, sha256."""
        shards = [record for _, _, info in self.parts() for record in info["shards"]]
        return shards + [t for tables in self.data.get("tables", {}).values() for t in tables]

    def locate(self, path: Path) -> tuple[Part, str, dict]:
        """(part, side, shard record) of a file inside this directory; an error when it is not listed."""
        rel = path.resolve().relative_to(self.out.resolve()).as_posix()
        for part, side, info in self.parts():
            for record in info["shards"]:
                if record["file"] == rel:
                    return part, side, record
        raise DataprepError(f"{path}: not listed in {self.out / MANIFEST}: left over from an unfinished or older build; rerun dataprep prepare")


# -- opening and checking shards -----------------------------------------------------------------


# What reading damaged bytes can raise: every Arrow error (invalid data, types it cannot represent,
# sizes out of range), I/O errors, and bad UTF-8 or JSON in names and metadata.
READ_ERRORS = (pa.ArrowException, OSError, UnicodeDecodeError, ValueError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_shard(path: Path) -> pa.Table:
    """Memory-map one Arrow shard; the table's buffers point into the page cache (no copy)."""
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except FileNotFoundError:
        raise DataprepError(f"{path}: no such file") from None
    except READ_ERRORS as exc:
        raise DataprepError(f"{path}: not a readable Arrow shard ({_first_line(exc)}); it may be truncated or corrupt") from None


def shard_metadata(table_or_schema: pa.Table | pa.Schema, path: Path) -> dict:
    """The JSON a shard carries about itself (phase, side, tokenizer, limits)."""
    schema_ = table_or_schema if isinstance(table_or_schema, pa.Schema) else table_or_schema.schema
    raw = (schema_.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataprepError(f"{path}: an Arrow file but not a dataprep shard (no '{METADATA_KEY.decode()}' schema metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataprepError(f"{path}: its '{METADATA_KEY.decode()}' schema metadata is not JSON ({_first_line(exc)}); the file is damaged") from None
    if not isinstance(meta, dict):
        raise DataprepError(f"{path}: its '{METADATA_KEY.decode()}' schema metadata is not a JSON object; the file is damaged")
    return meta


def validate(table: pa.Table, path: Path, full: bool) -> None:
    """Arrow's structural checks; `full` also walks every list offset and string (O(rows))."""
    try:
        table.validate(full=full)
    except READ_ERRORS as exc:
        raise DataprepError(f"{path}: corrupt shard ({_first_line(exc)}); rerun dataprep prepare") from None


def check_hash(path: Path, record: dict) -> None:
    """The shard's bytes are the ones the manifest vouches for (sha256): a changed byte anywhere, even
    one that leaves the file readable, is refused."""
    digest = file_sha256(path)
    if digest != record["sha256"]:
        raise DataprepError(f"{path}: sha256 {digest[:16]}... but {MANIFEST} says {record['sha256'][:16]}... (the bytes changed); "
                            "rerun dataprep prepare")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_shard(manifest: Manifest, record: dict, part: Part, side: str, full: bool = True, hashed: bool = False) -> pa.Table:
    """Open one listed shard, memory-mapped, after checking it against the manifest: present, its size,
    (with `hashed`) its sha256, Arrow structure, schema, metadata and rows. `full=False` keeps the
    structural checks O(1); `full=True` also walks every offset. DataprepError names the shard on any
    mismatch."""
    path = manifest.out / record["file"]
    if not path.is_file():
        raise DataprepError(f"{path}: missing (listed in {MANIFEST}); rerun dataprep prepare")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise DataprepError(f"{path}: {size} bytes but {MANIFEST} says {record['bytes']} (truncated or rewritten); rerun dataprep prepare")
    if hashed:
        check_hash(path, record)
    table = read_shard(path)
    tokenizer = manifest.tokenizer
    if not table.schema.equals(schema(part, token_type(tokenizer.vocab_size))):
        raise DataprepError(f"{path}: columns {table.schema.names} do not match the {part_dir(part)} schema")
    meta = shard_metadata(table, path)
    expected = {"phase": part, "side": side, "tokenizer_fingerprint": tokenizer.fingerprint, "eos_id": tokenizer.eos_id}
    wrong = {k: meta.get(k) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        raise DataprepError(f"{path}: shard metadata {wrong} disagrees with {MANIFEST}")
    if table.num_rows != record["rows"]:
        raise DataprepError(f"{path}: {table.num_rows} rows but {MANIFEST} says {record['rows']}")
    validate(table, path, full)
    return table


@dataclass(frozen=True)
class Shards:
    """One part and side of a prepared directory: its checked, memory-mapped shards, in order."""

    manifest: Manifest
    part: Part
    side: str
    paths: list[Path]
    tables: list[pa.Table]

    @property
    def num_rows(self) -> int:
        return sum(t.num_rows for t in self.tables)


def open_shards(out: Path | str, part: Part, side: str = "train", full: bool = False, hashed: bool = True) -> Shards:
    """Every shard of one part and side, checked (`check_shard`; `hashed`: its sha256 too, about a
    second per GB read). Refuses an edited manifest, an unfinished build, a part that was not built,
    and a missing, extra or damaged shard, with one line naming it."""
    manifest = Manifest.read(out)
    if hashed:
        manifest.require_sealed()
    info = manifest.part(part, side)
    if info is None:
        why = "prepare it with --unsup PATH" if part == UNSUP else "split weight 0?"
        raise DataprepError(f"{out}: its manifest lists no {part_dir(part)} {side} shards ({why})")
    listed = [record["file"] for record in info["shards"]]
    found = {p.relative_to(manifest.out).as_posix() for p in (manifest.out / part_dir(part)).glob(f"{side}-*.arrow")}
    extra = sorted(found - set(listed))
    if extra:
        raise DataprepError(f"{manifest.out / extra[0]}: extra shard, not listed in {manifest.out / MANIFEST}; remove it or rerun dataprep prepare")
    tables = [check_shard(manifest, record, part, side, full, hashed) for record in info["shards"]]
    return Shards(manifest, part, side, [manifest.out / f for f in listed], tables)


# -- zero-copy views -----------------------------------------------------------------------------


def numpy_view(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width Arrow array without nulls as numpy (a view when it has one chunk). Arrow's own
    to_numpy imports pandas, which costs a noticeable fraction of a small run."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    # to_pandas_dtype maps to numpy without importing pandas; str() would not do ("float" is float32 in Arrow).
    return np.frombuffer(array.buffers()[1], dtype=array.type.to_pandas_dtype())[array.offset : array.offset + len(array)]


def list_views(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list<uint16|int32> array as numpy views of its Arrow buffers:
    row i is values[offsets[i]:offsets[i + 1]]."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    values = np.frombuffer(column.values.buffers()[1], dtype=np.dtype(str(column.type.value_type)))
    return offsets, values


def token_lengths(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Tokens per row of a token column."""
    return numpy_view(pc.list_value_length(column))
