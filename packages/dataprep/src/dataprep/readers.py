"""Read one local input file into an Arrow table, with precise errors for malformed rows.

Supported: .jsonl / .jsonl.gz (JSON Lines), .json / .json.gz (a JSON list of objects, or JSON Lines),
.parquet, .csv. The fast path is pyarrow's native reader; when it rejects a JSON file we re-scan it in
Python to report the exact line and field, because pyarrow's row numbers are relative to a block.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataprep.errors import DataprepError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")


def is_supported(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def read_table(path: Path, string_fields: tuple[str, ...] = ()) -> pa.Table:
    """Rows of `path` as a table. `string_fields` that are present must hold strings or nulls."""
    name = path.name
    try:
        if name.endswith(".parquet"):
            table = pq.read_table(path)
        elif name.endswith(".csv"):
            table = pacsv.read_csv(path)
        elif name.endswith((".json", ".json.gz")) and _starts_with_bracket(path):
            table = _read_json_list(path)
        elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            table = _read_json_lines(path, string_fields)
        else:
            raise DataprepError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataprepError(f"{path}: cannot be read ({_first_line(exc)}); is it a valid {_kind(name)} file?") from None
    _check_string_fields(path, table, string_fields)
    return table


def _kind(name: str) -> str:
    return next(s for s in SUFFIXES if name.endswith(s)).lstrip(".") if name.endswith(SUFFIXES) else "data"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _starts_with_bracket(path: Path) -> bool:
    with _open_text(path) as f:
        head = f.read(4096).lstrip("\ufeff \t\r\n")
    return head.startswith("[")


def _read_json_lines(path: Path, string_fields: tuple[str, ...]) -> pa.Table:
    stream = pa.input_stream(str(path), compression="gzip" if path.name.endswith(".gz") else None)
    try:
        # Large blocks so that one long dialogue never straddles a block boundary.
        return pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=64 << 20))
    except pa.ArrowInvalid as exc:
        _locate_json_lines_error(path, string_fields)
        raise DataprepError(f"{path}: invalid JSON Lines ({_first_line(exc)})") from None


def _locate_json_lines_error(path: Path, string_fields: tuple[str, ...]) -> None:
    """Raise a DataprepError for the first line that is not a JSON object of the expected shape."""
    first_types: dict[str, str] = {}
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataprepError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove this line") from None
            if not isinstance(obj, dict):
                raise DataprepError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            for key, value in obj.items():
                if value is None:
                    continue
                kind = type(value).__name__
                if key in string_fields and not isinstance(value, str):
                    raise DataprepError(f"{path}:{lineno}: field '{key}' is {kind}, expected a string")
                if first_types.setdefault(key, kind) != kind:
                    raise DataprepError(
                        f"{path}:{lineno}: field '{key}' is {kind} but earlier rows hold {first_types[key]}; "
                        "make the column one type"
                    )


def _read_json_list(path: Path) -> pa.Table:
    with _open_text(path) as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as exc:
            raise DataprepError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None) if isinstance(rows, list) else None
        where = f" (element {bad})" if bad is not None else ""
        raise DataprepError(f"{path}: expected a JSON list of objects{where}")
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        _locate_list_type_error(path, rows)
        raise


def _locate_list_type_error(path: Path, rows: list[dict]) -> None:
    first_types: dict[str, str] = {}
    for index, obj in enumerate(rows):
        for key, value in obj.items():
            if value is None:
                continue
            kind = type(value).__name__
            if first_types.setdefault(key, kind) != kind:
                raise DataprepError(
                    f"{path}: element {index}: field '{key}' is {kind} but earlier elements hold {first_types[key]}"
                )


def _check_string_fields(path: Path, table: pa.Table, string_fields: tuple[str, ...]) -> None:
    for name in string_fields:
        if name not in table.column_names:
            continue
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type):
            continue
        first = next(i for i, v in enumerate(column) if v.is_valid)
        raise DataprepError(f"{path}: row {first}: field '{name}' is {column.type}, expected a string")
