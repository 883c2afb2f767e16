"""Where rows come from, and how each file's native rows become canonical (prompt, chosen, rejected).

A `Dataset` is one `--data` argument: the registered name `hh`, or a local file or directory. Its files
are sorted by path; a file whose name contains "test" is the eval side, every other file the train side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dataprep import readers
from dataprep.errors import DataprepError

SIDES = ("train", "eval")

# Canonical text columns produced by every adapter, plus the reason a row is dropped (null = kept).
CANONICAL = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("drop_reason", pa.string()),
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


def resolve(spec: str, data_dir: Path | None = None, revision: str | None = None) -> Dataset:
    """Turn one `--data` argument into a Dataset with its files located (downloading if needed)."""
    from dataprep.sources import hh, local

    if spec == hh.NAME:
        return hh.resolve(data_dir, revision)
    return local.resolve(Path(spec))


def read_canonical(dataset: Dataset, file: InputFile) -> tuple[pa.Table, str]:
    """Read one file and convert it to the CANONICAL schema; returns (table, adapter name)."""
    from dataprep.sources import hh, local

    table = readers.read_table(file.path, string_fields=("prompt", "chosen", "rejected"))
    columns = set(table.column_names)
    adapter = dataset.adapter or ("jsonfile" if "prompt" in columns else hh.NAME)
    if adapter == hh.NAME:
        _require(file, columns, {"chosen", "rejected"}, "HH-style rows need 'chosen' and 'rejected' dialogues")
        return hh.normalize(table, file.path), adapter
    _require(file, columns, {"prompt", "chosen"}, "prompt/chosen/rejected rows need at least 'prompt' and 'chosen'")
    return local.normalize_jsonfile(table, file.path), adapter


def _require(file: InputFile, columns: set[str], needed: set[str], why: str) -> None:
    missing = sorted(needed - columns)
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise DataprepError(f"{file.path}: missing column(s) {', '.join(missing)} (found: {found}); {why}")
