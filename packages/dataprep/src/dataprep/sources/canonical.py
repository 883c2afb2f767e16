"""Stage 2 of prepare, per file: a file's native rows -> CANONICAL tables, through its adapter.

A registered dataset names its adapter; a user's file is told by its columns (after --columns). A row
whose text field is null or of the wrong type is a counted drop, or under --strict an error naming the
file, row and field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import readers
from dataprep.errors import DataprepError
from dataprep.sources import rows, scores
from dataprep.sources.catalog import ADAPTERS
from dataprep.sources.dataset import NATIVE_ROW, SCORES, Dataset, InputFile
from dataprep.sources.options import AdapterOptions
from dataprep.sources.ranking import RankingCounts, ranking_counts


@dataclass(frozen=True)
class Normalized:
    """One batch of a file through its adapter."""

    table: pa.Table  # CANONICAL rows
    row_ids: np.ndarray  # per row, its native row's index in the file (a ranking's pairs share their row's)
    adapter: str  # the adapter's name
    ranking: RankingCounts | None = None  # a ranking adapter's prompts, responses and pairs in this batch


def iter_canonical(dataset: Dataset, file: InputFile, options: AdapterOptions | None = None) -> Iterator[Normalized]:
    """Stream one file as CANONICAL tables.

    A registered dataset names its adapter; a user's file is told by its columns (after --columns):
    a `responses` list -> a ranking, `chosen` holding message lists -> chat pairs, a `messages` list ->
    chat SFT, a `prompt` column -> DeepSpeed-Chat's jsonfile, otherwise HH dialogues. A row whose field
    is null or of the wrong type is dropped as `missing_field` / `wrong_type`; with options.strict it is
    an error naming the row and field instead. Scores are read where the adapter has them, and pairs
    with equal scores become `tie` drops unless options.keep_ties; a score that is not a number is an
    error naming the row and field."""
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
            canonical, native = _native_rows(normalize(table))
            canonical = _with_scores(canonical, table, adapter.scores)
        except rows.RowError as exc:
            what = exc.problem or "is " + ("missing or null" if exc.reason == "missing_field" else "not of the expected type") + " (--strict)"
            raise DataprepError(f"{file.path}: row {row + exc.index}: field '{exc.field}' {what}") from None
        canonical = scores.mark_ties(canonical, options.keep_ties)
        if readers.INVALID in table.column_names and adapter.responses is None:  # marks are per native row
            wrong = pc.if_else(pc.is_null(table.column(readers.INVALID)), pa.scalar(None, pa.string()), "wrong_type")
            reasons = pc.coalesce(wrong, canonical.column("drop_reason"))
            canonical = canonical.set_column(canonical.schema.get_field_index("drop_reason"), "drop_reason", reasons)
        if options.strict:
            missing = pc.index(canonical.column("drop_reason"), "missing_field").as_py()
            if missing >= 0:
                missing = int(native[missing])
                field = next((f for f in adapter.required if table.column(f)[missing].as_py() is None), adapter.required[0])
                raise DataprepError(f"{file.path}: row {row + missing}: field '{field}' is missing or null (--strict)")
        counts = ranking_counts(table, canonical, adapter.responses) if adapter.responses else None
        yield Normalized(canonical, row + native, adapter.name, counts)
        row += table.num_rows


def _native_rows(canonical: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """The CANONICAL rows, and each one's native row within the batch: a ranking adapter says (NATIVE_ROW),
    every other adapter gives one row per native row."""
    if NATIVE_ROW not in canonical.column_names:
        return canonical, np.arange(canonical.num_rows, dtype=np.int64)
    return canonical.drop_columns([NATIVE_ROW]), canonical.column(NATIVE_ROW).to_numpy()


def _with_scores(canonical: pa.Table, native: pa.Table, columns: tuple[str, str] | None) -> pa.Table:
    """The adapter's canonical rows with the native score columns it names (one canonical row per
    native row); a column absent from the file leaves its scores null."""
    for name, column in zip(SCORES, columns or ()):
        if column in native.column_names:
            canonical = canonical.set_column(canonical.schema.get_field_index(name), name, scores.column(native.column(column), column))
    return canonical


def is_ranking(dataset: Dataset, mapping: dict[str, str] | None) -> bool:
    """Whether `dataset` holds rankings (K responses per prompt), registered or told by its first rows."""
    if dataset.adapter is not None:
        return ADAPTERS[dataset.adapter].responses is not None
    return any(_layout(file, dict(mapping or {})) == "ranking" for file in dataset.files)


def _layout(file: InputFile, mapping: dict[str, str]) -> str | None:
    """Ranking and chat layouts from the column types (their list columns must not be read as text),
    never from one row: a null in the first row says nothing about the file. None = decide from the
    first batch's columns. A ranking's rows are checked one by one (ranking.py)."""
    types = readers.column_types(file.path)
    kind = lambda name: types.get(mapping.get(name, name))  # noqa: E731
    if _lists(kind("responses")) or _nulls(kind("responses")):  # null throughout the first batch: still the ranking's column
        if kind("ranks") is None and kind("scores") is None:
            found = ", ".join(sorted(types)) or "none"
            raise DataprepError(f"{file.path}: a 'responses' list needs exactly one of 'ranks' or 'scores' beside it, "
                                f"to order them (found: {found}); map yours with --columns ranks=...|scores=...")
        return "ranking"
    if _lists(kind("chosen")):
        return "chat"
    if (kind("chosen") is None or _nulls(kind("chosen"))) and _lists(kind("messages")):
        return "messages"
    return None


def _lists(kind: pa.DataType | None) -> bool:
    return kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _nulls(kind: pa.DataType | None) -> bool:
    return kind is not None and pa.types.is_null(kind)


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
