"""Where rows come from, and how each file's native rows become canonical (prompt, chosen, rejected).

A `Dataset` is one `--data` argument: a registered name or hub id (catalog.py; `dataprep datasets`
lists them), or a local file or directory. A local dataset's files are sorted by path; a file whose
name contains "test" is the eval side, every other file the train side. A registered dataset's sides
come from its split names (hub.py). Each file goes through one adapter (spec.py) into CANONICAL rows.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from dataprep import readers
from dataprep.errors import DataprepError

SIDES = ("train", "eval")

# Bump an adapter's version whenever its output for the same input changes: it is part of the cache key.
ADAPTER_VERSIONS = {
    "hh": 1, "jsonfile": 1, "chat": 1, "messages": 1, "dahoas": 1, "synthetic": 1, "yitingxie": 1, "webgpt": 1,
    "shp": 1, "sharegpt": 1, "zhihu": 1, "miracl": 1, "hc3": 1, "mkqa-zh_cn": 1, "mkqa-ja": 1, "qg-jaquad": 1,
    "qag-jaquad": 1, "ultrafeedback": 1,
}

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
    """Registered dataset names, aliases and hub ids -> their resolver (data_dir, revision) -> Dataset.
    A hub id read by several datasets (mkqa, one per language) resolves only by name."""
    from dataprep.sources import catalog, hh, hub

    names: dict[str, Callable[[Path | None, str | None], Dataset]] = {hh.NAME: hh.resolve, hh.HUB_ID: hh.resolve}
    shared = catalog.ambiguous_hub_ids()
    for spec in catalog.specs():
        resolver = partial(hub.resolve, spec)
        for key in (spec.name, *spec.aliases, spec.hub_id):
            if key and key not in shared:
                names.setdefault(key, resolver)
    return names


def resolve(spec: str, data_dir: Path | None = None, revision: str | None = None) -> Dataset:
    """Turn one `--data` argument into a Dataset with its files located (downloading if needed)."""
    from dataprep.sources import catalog, hub, local

    names = registered()
    if spec in names:
        return names[spec](data_dir, revision)
    shared = catalog.ambiguous_hub_ids()
    if spec in shared:
        raise DataprepError(f"--data {spec}: read as one of {', '.join(shared[spec])}; pass that name instead")
    path = Path(spec).expanduser()
    if path.is_dir():
        # Like DeepSpeed-Chat: a local copy at a path ending in a hub id (/data/Dahoas/rm-static) is that dataset.
        posix = path.resolve().as_posix()
        for known in catalog.specs():
            if known.hub_id and known.hub_id not in shared and posix.endswith("/" + known.hub_id):
                return hub.from_dir(known, path, origin=str(path))
    if path.exists():
        return local.resolve(path)
    close = difflib.get_close_matches(spec, list(names), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    kind = "no such file or directory" if readers.is_supported(path) or os.sep in spec else "not a registered dataset"
    raise DataprepError(f"--data {spec}: {kind}; {hint}registered names: {', '.join(names)}")


def iter_canonical(dataset: Dataset, file: InputFile, options=None) -> Iterator[tuple[pa.Table, str]]:
    """Stream one file as CANONICAL tables; yields (table, adapter name).

    A registered dataset names its adapter; a user's file is told by its columns (after --columns):
    `chosen` holding message lists -> chat pairs, a `messages` list -> chat SFT, a `prompt` column ->
    DeepSpeed-Chat's jsonfile, otherwise HH dialogues. A row whose field is null or of the wrong type
    is dropped as `missing_field` / `wrong_type`; with options.strict it is an error naming the row and
    field instead. `options` is a sources.options.AdapterOptions (default: all defaults)."""
    from dataprep.sources import catalog, rows
    from dataprep.sources.options import AdapterOptions

    options = options or AdapterOptions()
    mapping = dict(options.columns or {}) if dataset.adapter is None else {}  # --columns: users' own files only
    name = dataset.adapter or _layout(file, mapping)
    adapter, normalize, row = (catalog.adapters()[name] if name else None), None, 0
    reader_fields = ("prompt", "chosen", "rejected") if adapter is None else adapter.text_fields
    reader_fields = tuple(mapping.get(f, f) for f in reader_fields)
    for table in readers.iter_tables(file.path, string_fields=reader_fields, strict=options.strict):
        table = _map_columns(file, table, mapping, first=row == 0)
        if row == 0:
            columns = set(table.column_names) - {readers.INVALID}
            adapter = adapter or catalog.adapters()["jsonfile" if "prompt" in columns else "hh"]
            _require(file, columns, set(adapter.required), _layout_hint(adapter))
            normalize = adapter.make(options)
        for required in adapter.required:
            if required not in table.column_names:  # absent from this batch only: every row here misses it
                table = table.append_column(required, pa.nulls(table.num_rows, pa.string()))
        try:
            canonical = normalize(table)
        except rows.RowError as exc:
            what = "missing or null" if exc.reason == "missing_field" else "not of the expected type"
            raise DataprepError(f"{file.path}: row {row + exc.index}: field '{exc.field}' is {what} (--strict)") from None
        if readers.INVALID in table.column_names:
            wrong = pc.if_else(pc.is_null(table.column(readers.INVALID)), pa.scalar(None, pa.string()), "wrong_type")
            reasons = pc.coalesce(wrong, canonical.column("drop_reason"))
            canonical = canonical.set_column(canonical.schema.get_field_index("drop_reason"), "drop_reason", reasons)
        if options.strict:
            missing = pc.index(canonical.column("drop_reason"), "missing_field").as_py()
            if missing >= 0:
                field = next((f for f in adapter.required if table.column(f)[missing].as_py() is None), adapter.required[0])
                raise DataprepError(f"{file.path}: row {row + missing}: field '{field}' is missing or null (--strict)")
        row += table.num_rows
        yield canonical, adapter.name


def _layout(file: InputFile, mapping: dict[str, str]) -> str | None:
    """Chat layouts from the first row (their list columns must not be read as text); None = decide
    from the first batch's columns."""
    first = readers.first_row(file.path)
    value = lambda name: first.get(mapping.get(name, name))  # noqa: E731
    if isinstance(value("chosen"), list):
        return "chat"
    if value("chosen") is None and isinstance(value("messages"), list):
        return "messages"
    return None


def _map_columns(file: InputFile, table: pa.Table, mapping: dict[str, str], first: bool) -> pa.Table:
    """--columns NAME=COLUMN: the user's column becomes NAME (a column already called NAME gives way).
    A mapped column absent from the first batch is an error; from a later one, its rows read as null."""
    if not mapping:
        return table
    present = [c for c in table.column_names if c != readers.INVALID]
    if first:
        for name, column in mapping.items():
            if column not in present:
                raise DataprepError(f"{file.path}: --columns {name}={column}: no column '{column}' (found: {', '.join(present) or 'none'})")
    renamed = {column: name for name, column in mapping.items()}
    keep = [c for c in table.column_names if c in renamed or c not in mapping]
    return table.select(keep).rename_columns([renamed.get(c, c) for c in keep])


def _layout_hint(adapter) -> str:
    if adapter.name == "hh":
        return "HH-style rows need 'chosen' and 'rejected' dialogues (or map your columns with --columns prompt=...,chosen=...,rejected=...)"
    if adapter.name == "jsonfile":
        return "prompt/chosen/rejected rows need at least 'prompt' and 'chosen'"
    return f"the {adapter.name} layout reads {', '.join(adapter.columns)}"


def _require(file: InputFile, columns: set[str], needed: set[str], why: str) -> None:
    missing = sorted(needed - columns)
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise DataprepError(f"{file.path}: missing column(s) {', '.join(missing)} (found: {found}); {why}")
