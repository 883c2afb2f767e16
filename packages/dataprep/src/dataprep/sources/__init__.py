"""Where rows come from, and how each file's native rows become canonical (prompt, chosen, rejected).

A `Dataset` is one `--data` argument: the registered name `hh`, or a local file or directory. Its files
are sorted by path; a file whose name contains "test" is the eval side, every other file the train side.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from dataprep import readers
from dataprep.errors import DataprepError

SIDES = ("train", "eval")

# Bump an adapter's version whenever its output for the same input changes: it is part of the cache key.
ADAPTER_VERSIONS = {"hh": 1, "jsonfile": 1}

# Canonical text columns produced by every adapter, plus the reason a row is dropped (null = kept) and
# an optional group key: rows with the same non-null group (an SHP post, say) are one unit for
# `--split-by prompt`; a null group means "group by the prompt text".
CANONICAL = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("drop_reason", pa.string()),
        ("group", pa.string()),
    ]
)


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
    adapter: str | None = None  # forced adapter ("hh"); None = detect per file from its columns


def side_of(path: Path) -> str:
    return "eval" if "test" in path.name.lower() else "train"


def registered() -> dict[str, Callable[[Path | None, str | None], Dataset]]:
    """Registered dataset names and hub ids -> their resolver (data_dir, revision) -> Dataset."""
    from dataprep.sources import hh

    return {hh.NAME: hh.resolve, hh.HUB_ID: hh.resolve}


def resolve(spec: str, data_dir: Path | None = None, revision: str | None = None) -> Dataset:
    """Turn one `--data` argument into a Dataset with its files located (downloading if needed)."""
    from dataprep.sources import local

    names = registered()
    if spec in names:
        return names[spec](data_dir, revision)
    path = Path(spec).expanduser()
    if path.exists():
        return local.resolve(path)
    close = difflib.get_close_matches(spec, list(names), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    kind = "no such file or directory" if readers.is_supported(path) or os.sep in spec else "not a registered dataset"
    raise DataprepError(f"--data {spec}: {kind}; {hint}registered names: {', '.join(names)}")


def iter_canonical(dataset: Dataset, file: InputFile, strict: bool = False) -> Iterator[tuple[pa.Table, str]]:
    """Stream one file as CANONICAL tables; yields (table, adapter name).

    A row whose text field is null or not a string is dropped as `missing_field` / `wrong_type`;
    with `strict` it is an error naming the row and field instead. The adapter is chosen from the
    first batch's columns (a `prompt` column means DeepSpeed-Chat's jsonfile layout)."""
    from dataprep.sources import hh, local

    adapter, required, row = dataset.adapter, (), 0
    for table in readers.iter_tables(file.path, string_fields=("prompt", "chosen", "rejected"), strict=strict):
        columns = set(table.column_names)
        if row == 0:
            adapter = adapter or ("jsonfile" if "prompt" in columns else hh.NAME)
            required = ("chosen", "rejected") if adapter == hh.NAME else ("prompt", "chosen")
            why = "HH-style rows need 'chosen' and 'rejected' dialogues" if adapter == hh.NAME else "prompt/chosen/rejected rows need at least 'prompt' and 'chosen'"
            _require(file, columns - {readers.INVALID}, set(required), why)
        for name in required:
            if name not in columns:  # absent from this batch only: every row here misses it
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
        canonical = hh.normalize(table) if adapter == hh.NAME else local.normalize_jsonfile(table)
        if readers.INVALID in columns:
            wrong = pc.if_else(pc.is_null(table.column(readers.INVALID)), pa.scalar(None, pa.string()), "wrong_type")
            reasons = pc.coalesce(wrong, canonical.column("drop_reason"))
            canonical = canonical.set_column(canonical.schema.get_field_index("drop_reason"), "drop_reason", reasons)
        if strict:
            missing = pc.index(canonical.column("drop_reason"), "missing_field").as_py()
            if missing >= 0:
                field = next(f for f in required if table.column(f)[missing].as_py() is None)
                raise DataprepError(f"{file.path}: row {row + missing}: field '{field}' is missing or null (--strict)")
        row += table.num_rows
        yield canonical, adapter


def _require(file: InputFile, columns: set[str], needed: set[str], why: str) -> None:
    missing = sorted(needed - columns)
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise DataprepError(f"{file.path}: missing column(s) {', '.join(missing)} (found: {found}); {why}")
