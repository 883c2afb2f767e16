"""Graders' scores: what counts as one, how a native column of them is read, and the tie rule.

A score is a finite number (a numeric string too, as CSV files hold them); null means "no score". Any
other value is bad input, whatever --strict says: prepare stops with one line naming the file, row and
field. Two scores that are equal carry no preference, so the pair is dropped as `tie` unless
--keep-ties.

Stage 2 of prepare (normalize): canonical.py reads users' score columns and applies the tie rule to
every adapter's rows; the adapters with their own score fields (SHP, WebGPT, rankings) call `number`.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from dataprep.sources.rows import BadInput, RowError

TIE = "tie"


def number(value: object, field: str) -> float | None:
    """One score: null -> None, a finite number -> float; anything else raises BadInput."""
    if value is None:
        return None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            parsed = float(value)
        except ValueError:
            parsed = math.nan
        if math.isfinite(parsed):
            return parsed
    raise BadInput(field, f"is not a number ({value!r})")


def column(values: pa.ChunkedArray, field: str) -> pa.Array:
    """A native score column as float64. The first value that is not a number raises RowError with its
    row; numeric columns are checked without leaving Arrow."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_null(values.type):
        scores = pc.cast(values, pa.float64()).combine_chunks()
        bad = pc.index(pc.is_finite(scores), False).as_py()  # NaN or infinity; nulls are fine
        if bad < 0:
            return scores
        raise RowError(bad, field, "bad_input", f"is not a number ({values[bad].as_py()!r})")
    parsed = []
    for index, value in enumerate(values.to_pylist()):
        try:
            parsed.append(number(value, field))
        except BadInput as bad:
            raise RowError(index, field, "bad_input", bad.problem) from None
    return pa.array(parsed, pa.float64())


def mark_ties(canonical: pa.Table, keep: bool) -> pa.Table:
    """Rows still kept whose two scores are equal become `tie` drops, unless `keep`."""
    if keep:
        return canonical
    equal = pc.fill_null(pc.equal(canonical.column("chosen_score"), canonical.column("rejected_score")), False)
    reasons = canonical.column("drop_reason")
    tied = pc.if_else(pc.and_(equal, pc.is_null(reasons)), TIE, reasons)
    return canonical.set_column(canonical.schema.get_field_index("drop_reason"), "drop_reason", tied)
