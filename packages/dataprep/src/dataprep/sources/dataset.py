"""What a `--data` argument resolves to (a `Dataset` of `InputFile`s), and the canonical table every
adapter produces from a file's native rows. Stage 1 of prepare (resolve) builds these; stage 2
(pool.py) reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

# Canonical text columns produced by every adapter, plus the reason a row is dropped (null = kept), an
# optional group key (rows with the same non-null group, an SHP post say, are one unit for
# `--split-by prompt`; a null group means "group by the prompt text"), the graders' scores of the two
# responses (null where the data has none), and the character spans of the assistant's earlier turns
# inside the prompt, flat [start, end, start, end, ...], where the adapter knows them (a chat template's
# rendering); null means "find them from the HH markers" (loss_mask.py).
CANONICAL = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("drop_reason", pa.string()),
        ("group", pa.string()),
        ("chosen_score", pa.float64()),
        ("rejected_score", pa.float64()),
        ("assistant_spans", pa.list_(pa.int32())),
    ]
)
SCORES = ("chosen_score", "rejected_score")
# A column only a ranking adapter adds to its CANONICAL table, which gives several rows per native row:
# each row's native row within the batch (canonical.py turns it into the rows' row_id).
NATIVE_ROW = "native_row"


def canonical_table(columns: dict[str, list]) -> pa.Table:
    """A CANONICAL table from per-column lists; a column not given (scores, from most adapters) is null."""
    rows = len(columns["prompt"])
    return pa.table([pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type) for f in CANONICAL],
                    schema=CANONICAL)


@dataclass(frozen=True)
class InputFile:
    path: Path
    side: str  # "train" | "eval"
    source: str  # the label stored in every output row's `source` column


@dataclass(frozen=True)
class Dataset:
    name: str
    files: tuple[InputFile, ...]
    origin: str  # hub id or local path, for the manifest
    revision: str | None = None  # hub commit, when loaded from the hub
    adapter: str | None = None  # a registered dataset's adapter; None = detect per file from its columns


def side_of(path: Path) -> str:
    """A user's file: a name containing "test" is the eval side, any other the train side."""
    return "eval" if "test" in path.name.lower() else "train"
