"""Stage 2 of prepare, per file: a file's native rows -> CANONICAL tables, through its adapter.

A registered dataset names its adapter; a user's file is told by its columns (after --columns). A row
whose text field is null or of the wrong type is a counted drop, or under --strict an error naming the
file, row and field."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from dataprep import readers
from dataprep.errors import DataprepError
from dataprep.sources import rows
from dataprep.sources.catalog import ADAPTERS
from dataprep.sources.dataset import Dataset, InputFile
from dataprep.sources.options import AdapterOptions


def iter_canonical(dataset: Dataset, file: InputFile, options: AdapterOptions | None = None) -> Iterator[tuple[pa.Table, str]]:
    """Stream one file as CANONICAL tables; yields (table, adapter name).

    A registered dataset names its adapter; a user's file is told by its columns (after --columns):
    `chosen` holding message lists -> chat pairs, a `messages` list -> chat SFT, a `prompt` column ->
    DeepSpeed-Chat's jsonfile, otherwise HH dialogues. A row whose field is null or of the wrong type
    is dropped as `missing_field` / `wrong_type`; with options.strict it is an error naming the row and
    field instead."""
    options = options or AdapterOptions()
    mapping = dict(options.columns or {}) if dataset.adapter is None else {}  # --columns: users' own files only
    name = dataset.adapter or _layout(file, mapping)
    adapter, normalize, row = (ADAPTERS[name] if name else None), None, 0
    reader_fields = ("prompt", "chosen", "rejected") if adapter is None else adapter.text_fields
    reader_fields = tuple(mapping.get(f, f) for f in reader_fields)
    for table in readers.iter_tables(file.path, string_fields=reader_fields, strict=options.strict):
        table = _map_columns(file, table, mapping, first=row == 0)
        if row == 0:
            columns = set(table.column_names) - {readers.INVALID}
            adapter = adapter or ADAPTERS["jsonfile" if "prompt" in columns else "hh"]
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
