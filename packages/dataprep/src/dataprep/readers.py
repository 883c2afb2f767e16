"""Read one local input file into an Arrow table, with precise errors for malformed input.

Supported: .jsonl / .jsonl.gz (JSON Lines), .json / .json.gz (a JSON array of objects, or JSON Lines),
.parquet, .csv. The fast path is pyarrow's native reader. When it rejects a JSON file, a Python pass
finds out why, so that the user gets the exact line: a syntax error or bad UTF-8 on line k is fatal,
while a single row whose text field holds a non-string value is kept with a `wrong_type` mark in the
INVALID column (the adapter drops it and counts it), or is fatal under `strict`.
A text field of the wrong type in every row, an empty file or a truncated gzip file is fatal.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataprep.errors import DataprepError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")
INVALID = "_invalid"  # per-row reason a text field was unusable ("wrong_type"), null when fine


def is_supported(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def read_table(path: Path, string_fields: tuple[str, ...] = (), strict: bool = False) -> pa.Table:
    """Rows of `path`. Present `string_fields` hold strings or nulls (or the row is marked INVALID)."""
    name = path.name
    try:
        if name.endswith(".parquet"):
            table = pq.read_table(path)
        elif name.endswith(".csv"):
            convert = pacsv.ConvertOptions(column_types={f: pa.string() for f in string_fields})
            table = pacsv.read_csv(path, convert_options=convert)
        elif name.endswith((".json", ".json.gz")) and _starts_with_bracket(path):
            table = _from_rows(path, _json_array(path), string_fields, strict)
        elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            table = _read_json_lines(path, string_fields, strict)
        else:
            raise DataprepError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")
    except (EOFError, zlib.error) as exc:
        raise DataprepError(f"{path}: truncated or damaged gzip file ({_first_line(exc)}); download or compress it again") from None
    except gzip.BadGzipFile:
        raise DataprepError(f"{path}: not a gzip file despite its .gz name") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataprepError(f"{path}: cannot be read as {_kind(name)} ({_first_line(exc)})") from None
    if table.num_rows == 0:
        raise DataprepError(f"{path}: empty file (no rows); remove it or add rows")
    _check_string_columns(path, table, string_fields)
    return table


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


def _read_json_lines(path: Path, string_fields: tuple[str, ...], strict: bool) -> pa.Table:
    stream = pa.input_stream(str(path), compression="gzip" if path.name.endswith(".gz") else None)
    try:
        # Large blocks so that one long record never straddles a block boundary.
        table = pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=64 << 20))
        table.validate(full=True)  # pyarrow's JSON reader lets invalid UTF-8 through
        return table
    except (pa.ArrowInvalid, OSError):  # let the Python pass say exactly what is wrong, and where
        return _from_rows(path, _json_lines(path), string_fields, strict)


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


def _from_rows(path: Path, rows: Iterable[tuple[str, object]], string_fields: tuple[str, ...], strict: bool) -> pa.Table:
    """Build a table row by row: non-string text values become null plus an INVALID mark."""
    columns: dict[str, list] = {}
    invalid: list[str | None] = []
    first_kind: dict[str, tuple[str, str]] = {}
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
                value, mark = None, "wrong_type"
            elif value is not None and key not in string_fields:
                kind = type(value).__name__
                seen = first_kind.setdefault(key, (kind, where))
                if seen[0] != kind:
                    raise DataprepError(f"{where}: field '{key}' is {kind} but {seen[1]} holds {seen[0]}; make the column one type")
            values.append(value)
        invalid.append(mark)
    table = pa.table({key: pa.array(values, pa.string() if key in string_fields else None) for key, values in columns.items()})
    if any(invalid):
        table = table.append_column(INVALID, pa.array(invalid, pa.string()))
    return table


def _check_string_columns(path: Path, table: pa.Table, string_fields: tuple[str, ...]) -> None:
    """A text column of another type in every row is a file-level error, not a row-level one."""
    for name in string_fields:
        if name not in table.column_names:
            continue
        kind = table.column(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise DataprepError(f"{path}: column '{name}' is {kind} in every row, expected text; check the column mapping")
