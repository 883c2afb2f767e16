"""Stream one local input file as Arrow tables of raw rows, with precise errors for malformed input.

Supported: .jsonl / .jsonl.gz (JSON Lines), .json / .json.gz (a JSON array of objects, or JSON Lines),
.parquet, .csv. Files are read in batches, so memory does not grow with the file (a JSON array is the
exception: it is one JSON value and is parsed whole). An empty CSV cell is null.

JSON Lines go through pyarrow's streaming reader. When it rejects a block, a Python pass takes over
from the first row not yet delivered and finds out why: a syntax error or bad UTF-8 on line k is
fatal, while a row whose text field holds a non-string value is delivered with a `wrong_type` mark in
the INVALID column (the adapter drops and counts it), or is fatal under `strict`. A text field of the
wrong type in every row, an empty file or a truncated gzip file is fatal.

Stage 2 of prepare (normalize) reads every input file through it.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataprep.errors import DataprepError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")
INVALID = "_invalid"  # per-row reason a text field was unusable ("wrong_type"), null when fine
BATCH_ROWS = 8192  # rows per table from the Python and parquet paths
# Bytes per pyarrow JSON block. pyarrow's streaming reader keeps a few dozen blocks in flight, so this
# sets its memory; a record larger than a block goes through the (slower, exact) Python pass instead.
JSON_BLOCK = 4 << 20


def is_supported(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def data_files(root: Path) -> list[Path]:
    """The supported files under the directory `root`, sorted by path, without hidden ones: a file or
    folder under `root` whose name starts with a dot (.ipynb_checkpoints/, .git/, .~lock files) holds
    an editor's or a tool's copies, not data. Read as data, a stale copy would sort first and become
    the first copy of every row it repeats."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # not walked at all
        found += [Path(folder, f) for f in files if not f.startswith(".") and f.endswith(SUFFIXES)]
    return sorted(p for p in found if p.is_file())


def read_table(path: Path, string_fields: tuple[str, ...] = (), strict: bool = False) -> pa.Table:
    """The whole file as one table (for small files and tests); see `iter_tables`."""
    return pa.concat_tables(list(iter_tables(path, string_fields, strict)), promote_options="permissive")


def iter_tables(path: Path, string_fields: tuple[str, ...] = (), strict: bool = False) -> Iterator[pa.Table]:
    """Raw rows of `path`, batch by batch. Present `string_fields` hold strings or nulls (a row whose
    value is of another type is marked in INVALID). Raises DataprepError for a bad file."""
    name = path.name
    counter = _Counter(path, string_fields)
    try:
        if name.endswith(".parquet"):
            source = _validated(pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS))
        elif name.endswith(".csv"):
            convert = pacsv.ConvertOptions(column_types={f: pa.string() for f in string_fields})
            source = map(_empty_cells_as_null, _validated(pacsv.open_csv(path, convert_options=convert)))
        elif name.endswith((".json", ".json.gz")) and _starts_with_bracket(path):
            source = _batched(_json_array(path), string_fields, strict)
        elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            source = _json_lines_tables(path, string_fields, strict)
        else:
            raise DataprepError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")
        for table in source:
            _check_types(path, table, string_fields)
            counter.add(table)
            yield table
    except (EOFError, zlib.error) as exc:
        raise DataprepError(f"{path}: truncated or damaged gzip file ({_first_line(exc)}); download or compress it again") from None
    except gzip.BadGzipFile:
        raise DataprepError(f"{path}: not a gzip file despite its .gz name") from None
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # every Arrow error: damaged bytes raise many kinds
        raise DataprepError(f"{path}: cannot be read as {_kind(name)} ({_first_line(exc)})") from None
    counter.finish()


def _validated(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Each batch as a table, after Arrow's full validation: the parquet reader lets bad UTF-8 in a
    damaged file through to the first string conversion."""
    for batch in batches:
        table = pa.Table.from_batches([batch])
        table.validate(full=True)
        yield table


def _empty_cells_as_null(table: pa.Table) -> pa.Table:
    """CSV has no null: an empty cell is how a CSV file writes one (pandas' to_csv does), so a text
    column's empty cells read as null, as a jsonl null (a null `rejected` makes a row SFT-only, while
    "" would drop it as empty_response). Empty cells of other columns are null already."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.equal(column, ""), pa.scalar(None, field.type), column))
    return table


class _Counter:
    """File-level verdicts that need every row: empty file, a text field wrong in every row."""

    def __init__(self, path: Path, string_fields: tuple[str, ...]):
        self.path, self.rows, self.wrong = path, 0, {f: 0 for f in string_fields}

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if INVALID in table.column_names:
            for field, n in _wrong_counts(table).items():
                self.wrong[field] += n

    def finish(self) -> None:
        if self.rows == 0:
            raise DataprepError(f"{self.path}: empty file (no rows); remove it or add rows")
        for field, n in self.wrong.items():
            if n == self.rows:
                raise DataprepError(f"{self.path}: column '{field}' is not text in any row; check the column mapping")


def _wrong_counts(table: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for mark in table.column(INVALID).drop_null().to_pylist():
        field = mark.split(":", 1)[1]
        counts[field] = counts.get(field, 0) + 1
    return counts


def _check_types(path: Path, table: pa.Table, string_fields: tuple[str, ...]) -> None:
    """Columnar formats carry one type per column: a text column of another type is fatal."""
    for name in string_fields:
        if name in table.column_names and not _is_text(table.column(name).type):
            raise DataprepError(f"{path}: column '{name}' is not text in any row ({table.column(name).type}); check the column mapping")


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _kind(name: str) -> str:
    return next(s for s in SUFFIXES if name.endswith(s)).lstrip(".")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _raw_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        yield from f


def _starts_with_bracket(path: Path) -> bool:
    head = next(_raw_lines(path), b"")
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def column_types(path: Path) -> dict[str, pa.DataType]:
    """Each column's type, to tell a file's layout before reading it (whether `chosen` holds text or
    message lists, whether there is a `responses` list): a parquet file's schema, else its first
    batch's (a JSON block: a column null in its first rows and lists later is a list column). {} when
    the file cannot be read (the full pass says why), and for CSV, which holds text only."""
    try:
        if path.name.endswith(".parquet"):
            return {f.name: f.type for f in pq.ParquetFile(path).schema_arrow}
        if path.name.endswith(".csv"):
            return {}
        tables = iter_tables(path)
        first = next(tables)
        tables.close()
    except (DataprepError, StopIteration, OSError, EOFError, zlib.error, pa.ArrowException, ValueError):  # UnicodeDecodeError is a ValueError
        return {}
    return {f.name: f.type for f in first.schema if f.name != INVALID}


def _json_lines_tables(path: Path, string_fields: tuple[str, ...], strict: bool) -> Iterator[pa.Table]:
    delivered = 0
    try:
        stream = pa.input_stream(str(path), compression="gzip" if path.name.endswith(".gz") else None)
        # One thread: the threaded reader parses far ahead of the consumer and holds hundreds of MB.
        reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=JSON_BLOCK, use_threads=False))
        for batch in reader:
            table = pa.Table.from_batches([batch])
            table.validate(full=True)  # pyarrow's JSON reader lets invalid UTF-8 through
            if any(not _is_text(table.column(f).type) for f in string_fields if f in table.column_names):
                raise pa.ArrowInvalid("a text field holds other values")
            yield table
            delivered += table.num_rows
        return
    except (pa.ArrowInvalid, OSError):
        pass  # the Python pass below says exactly what is wrong, and where
    yield from _batched(islice(_json_lines(path), delivered, None), string_fields, strict)


def _json_lines(path: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed value) per non-blank line; bad UTF-8 or JSON is fatal and names the line."""
    for lineno, raw in enumerate(_raw_lines(path), start=1):
        if lineno == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataprepError(f"{path}:{lineno}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); re-encode the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            yield f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataprepError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove this line") from None


def _json_array(path: Path) -> Iterator[tuple[str, object]]:
    raw = b"".join(_raw_lines(path)).removeprefix(b"\xef\xbb\xbf")
    try:
        rows = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataprepError(f"{path}: not valid UTF-8 (byte offset {exc.start}); re-encode the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataprepError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(rows, list):
        raise DataprepError(f"{path}: expected a JSON array of objects, got a JSON {type(rows).__name__}")
    for index, row in enumerate(rows):
        yield f"{path}: element {index}", row


def _batched(rows: Iterable[tuple[str, object]], string_fields: tuple[str, ...], strict: bool) -> Iterator[pa.Table]:
    rows = iter(rows)
    first_kind: dict[str, tuple[str, str]] = {}
    while chunk := list(islice(rows, BATCH_ROWS)):
        yield _from_rows(chunk, string_fields, strict, first_kind)


def _from_rows(rows: list[tuple[str, object]], string_fields: tuple[str, ...], strict: bool, first_kind: dict) -> pa.Table:
    """Build a table from parsed rows: a non-string text value becomes null plus an INVALID mark."""
    columns: dict[str, list] = {}
    invalid: list[str | None] = []
    for count, (where, obj) in enumerate(rows):
        if not isinstance(obj, dict):
            raise DataprepError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        mark = None
        for key in obj.keys() - columns.keys():
            columns[key] = [None] * count
        for key, values in columns.items():
            value = obj.get(key)
            if value is not None and key in string_fields and not isinstance(value, str):
                if strict:
                    raise DataprepError(f"{where}: field '{key}' is {type(value).__name__}, expected a string (--strict)")
                value, mark = None, f"wrong_type:{key}"
            elif value is not None and key not in string_fields:
                kind = type(value).__name__
                seen = first_kind.setdefault(key, (kind, where))
                # JSON writes 0 and 0.5 alike as numbers: int and float mix into one float column.
                if seen[0] != kind and {seen[0], kind} != {"int", "float"}:
                    raise DataprepError(f"{where}: field '{key}' is {kind} but {seen[1]} holds {seen[0]}; make the column one type")
            values.append(value)
        invalid.append(mark)
    wheres = [where for where, _ in rows]
    table = pa.table({key: _array(key, values, wheres, key in string_fields) for key, values in columns.items()})
    return table.append_column(INVALID, pa.array(invalid, pa.string()))


def _array(key: str, values: list, wheres: list[str], text: bool) -> pa.Array:
    """One column of parsed rows. Values Arrow cannot hold as one type (a list mixing numbers and text,
    say) are an error naming the first row that does not fit, found by bisection."""
    try:
        return pa.array(values, pa.string() if text else None)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fits, fails = 0, len(values)  # values[:fits] convert, values[:fails] do not
        while fails - fits > 1:
            mid = (fits + fails) // 2
            try:
                pa.array(values[:mid])
                fits = mid
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                fails = mid
        raise DataprepError(f"{wheres[fails - 1]}: field '{key}' holds {values[fails - 1]!r}, which does not fit one type with "
                            "the rows before it (numbers and text mixed?); make the column one type") from None
