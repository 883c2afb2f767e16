"""Shared pieces of the per-row adapters: DeepSpeed-Chat's surface forms, field access that turns a
missing or mistyped value into a counted drop, and the loop that builds a CANONICAL table.

An adapter's row function takes one native row (a dict of the columns it reads) and returns a `Row`
(a ranking's, a `Ranking`: ranking.py pairs them). It raises `Skip` for a row it cannot read at all;
the loop records the reason (and, under --strict, reports the row and field instead). It raises
`BadInput` for a value that is an error whatever --strict says (a score that is not a number).

Stage 2 of prepare (normalize)."""

from __future__ import annotations

from typing import Callable, NamedTuple, TypeVar

import pyarrow as pa

from dataprep.sources.dataset import CANONICAL

T = TypeVar("T")


def human(text: str) -> str:
    """DeepSpeed-Chat's single-line prompt: " Human: " + text + " Assistant:" (no space after the colon)."""
    return " Human: " + text + " Assistant:"


def reply(text: str) -> str:
    """A response as DeepSpeed-Chat appends it to the prompt: one leading space."""
    return " " + text


class Row(NamedTuple):
    """One canonical row, in CANONICAL's column order."""

    prompt: str | None
    chosen: str | None
    rejected: str | None = None
    drop_reason: str | None = None
    group: str | None = None
    chosen_score: float | None = None
    rejected_score: float | None = None
    assistant_spans: list[int] | None = None  # the prompt's assistant turns, flat [start, end, ...] (CANONICAL)


class Skip(Exception):
    """The row is dropped with `reason`; `field` names the culprit for --strict."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


class BadInput(Exception):
    """A value no option makes sense of (a score that is not a number, ranks that do not match the
    responses): prepare stops with one line naming the file, row and field, --strict or not."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


class RowError(Exception):
    """The row at `index` (within the table) has an unusable `field`: under --strict a missing or
    mistyped one (`reason`), always a BadInput one (`problem` says what is wrong)."""

    def __init__(self, index: int, field: str, reason: str, problem: str | None = None):
        super().__init__(f"{field}: {problem or reason}")
        self.index, self.field, self.reason, self.problem = index, field, reason, problem


FATAL_UNDER_STRICT = ("missing_field", "wrong_type")


def text(row: dict, field: str, value: object = None, *, given: bool = False) -> str:
    """The string at `field` (or `value` when `given`, for nested fields): null -> missing_field,
    another type -> wrong_type."""
    value = value if given else row.get(field)
    if value is None:
        raise Skip("missing_field", field)
    if not isinstance(value, str):
        raise Skip("wrong_type", field)
    return value


def first_item(value: object, field: str, empty: str) -> object:
    """The first element of the list at `field`: null -> missing_field, not a list -> wrong_type,
    an empty list -> the adapter's `empty` reason (DeepSpeed-Chat indexes [0] and crashes)."""
    if value is None:
        raise Skip("missing_field", field)
    if not isinstance(value, list):
        raise Skip("wrong_type", field)
    if not value:
        raise Skip(empty, field)
    return value[0]


def pair_reason(prompt: str, chosen: str, rejected: str | None) -> str | None:
    """The content checks every adapter applies to its raw texts (before any formatting)."""
    if not prompt.strip():
        return "empty_prompt"
    if not chosen.strip() or (rejected is not None and not rejected.strip()):
        return "empty_response"
    if chosen == rejected:
        return "identical_pair"
    return None


def apply(table: pa.Table, columns: tuple[str, ...], fn: Callable[[dict], T], strict: bool) -> list[T | Row]:
    """`fn` of each row of `table` (only `columns` are read; an absent column reads as null), or for a
    row it skips, that row dropped with its reason."""
    present = [c for c in columns if c in table.column_names]
    out: list[T | Row] = []
    for index, row in enumerate(table.select(present).to_pylist()):
        try:
            out.append(fn(row))
        except Skip as skip:
            if strict and skip.reason in FATAL_UNDER_STRICT:
                raise RowError(index, skip.field or "?", skip.reason) from None
            out.append(Row(None, None, None, skip.reason))
        except BadInput as bad:
            raise RowError(index, bad.field, "bad_input", bad.problem) from None
    return out


def table_of(rows: list[Row]) -> pa.Table:
    """A CANONICAL table of `rows`."""
    columns = list(zip(*rows)) if rows else [()] * len(CANONICAL)
    return pa.Table.from_arrays([pa.array(list(values), field.type) for values, field in zip(columns, CANONICAL)], schema=CANONICAL)


def build(table: pa.Table, columns: tuple[str, ...], fn: Callable[[dict], Row], strict: bool) -> pa.Table:
    """The CANONICAL table of `fn` applied to each row of `table` (see `apply`)."""
    return table_of(apply(table, columns, fn, strict))
