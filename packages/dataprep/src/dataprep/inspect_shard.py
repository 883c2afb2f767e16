"""`dataprep inspect SHARD`: what is inside one shard, without trusting anything but the file.

A reader of prepare's output, through the contract (format.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from dataprep import report
from dataprep.errors import DataprepError
from dataprep.format import PART_DIRS, SCORE_COLUMNS, TOKEN_COLUMNS, Manifest, check_shard, read_shard, schema, shard_metadata, token_lengths, validate
from dataprep.phases import length_stats
from dataprep.tokenizer import load_recorded


def inspect(path: Path, rows: int = 3) -> dict:
    """A JSON-able description of the shard; `decoded` holds the first rows as text when the
    tokenizer named by the output's manifest can be loaded and still has the shard's fingerprint.
    A shard inside OUT/phaseN/ (or OUT/unsup/) must be listed by OUT's manifest (a killed or running build's files
    are refused); a shard copied elsewhere is read on its own."""
    if not path.is_file():
        raise DataprepError(f"{path}: no such file")
    manifest = _manifest_beside(path)
    if manifest is not None:  # its bytes must be the ones the manifest vouches for
        phase, side, record = manifest.locate(path)
        table = check_shard(manifest, record, phase, side, hashed=True)
        meta = shard_metadata(table, path)
    else:
        table = read_shard(path)
        meta = shard_metadata(table, path)
        phase = meta.get("phase")
        known = isinstance(phase, (int, str)) and phase in TOKEN_COLUMNS
        if not known or not _matches(table.schema, phase):
            raise DataprepError(f"{path}: shard metadata names phase {phase!r} but its columns are {table.column_names}")
        validate(table, path, full=True)
        for key in ("tokenizer_fingerprint", "eos_id", "bos_id", "pad_id", "shard"):
            if key not in meta:
                raise DataprepError(f"{path}: its shard metadata has no '{key}'; the file is damaged or not a dataprep shard")
    lengths = {col: token_lengths(table.column(col)) for col in TOKEN_COLUMNS[phase]}
    info = {
        "path": str(path),
        "phase": phase,
        "side": meta.get("side"),
        "shard": meta.get("shard"),
        "num_shards": int(path.stem.rsplit("-of-", 1)[1]) if re.fullmatch(r".*-of-\d+", path.stem) else None,
        "rows": table.num_rows,
        "record_batches": pa.ipc.open_file(pa.memory_map(str(path))).num_record_batches,
        "bytes": path.stat().st_size,
        "schema": {f.name: str(f.type) for f in table.schema},
        "metadata": meta,
        "tokens": {col: length_stats(n) for col, n in lengths.items()},
        "histogram": {col: report.histogram(n) for col, n in lengths.items()},
    }
    decoder, note = _decoder(manifest)
    info["decode_note"] = note
    info["first_rows"] = [_row(table, i, phase, decoder) for i in range(min(rows, table.num_rows))]
    return info


def _row(table: pa.Table, i: int, phase: int | str, decoder) -> dict:
    row = {"row_id": table.column("row_id")[i].as_py(), "source": table.column("source")[i].as_py()}
    for col in ("prompt_len", *SCORE_COLUMNS):
        if col in table.column_names:
            row[col] = table.column(col)[i].as_py()
    for col in TOKEN_COLUMNS[phase]:
        ids = table.column(col)[i].as_py()
        row[col] = {"length": len(ids), "head": ids[:16]}
        if decoder is not None:
            row[col]["text"] = decoder(ids)
    return row


def _matches(found: pa.Schema, phase) -> bool:
    """The shard's columns are the phase's, with either id type."""
    return any(found.equals(schema(phase, ids)) for ids in (pa.uint16(), pa.int32()))


def _manifest_beside(path: Path) -> Manifest | None:
    """The manifest of the prepared directory a shard lives in (OUT/phaseN/ or OUT/unsup/), or None
    for a shard outside any; an unfinished output raises."""
    parent = path.resolve().parent
    return Manifest.read(parent.parent) if parent.name in PART_DIRS else None


def _decoder(manifest: Manifest | None):
    """The tokenizer named by the output's manifest, if it still has the fingerprint the shards were
    made with (check_shard has matched the shard's to the manifest's)."""
    if manifest is None:
        return None, "standalone shard (no manifest beside it): rows shown as token ids"
    try:
        tok = load_recorded(manifest)
    except DataprepError as exc:
        return None, f"{exc}: rows shown as token ids"
    return tok.decode, f"decoded with {manifest.tokenizer.load}"


def render(info: dict) -> str:
    meta = info["metadata"]
    lines = [
        f"shard       {info['path']}",
        f"phase       {info['phase']} ({info['side']}), shard {_ordinal(info['shard'])} of {info['num_shards'] or '?'}",
        f"rows        {info['rows']} in {info['record_batches']} record batches, {info['bytes'] / 1e6:.2f} MB",
        "schema      " + ", ".join(f"{k}: {v}" for k, v in info["schema"].items()),
        f"tokenizer   fingerprint {str(meta['tokenizer_fingerprint'])[:16]}...  eos {meta['eos_id']}  bos {meta['bos_id']}  pad {meta['pad_id']}",
        f"block       {meta['block']} tokens per row (PTX)" if "block" in meta else
        f"limits      max_seq_len {meta.get('max_seq_len')}  max_prompt_len {meta.get('max_prompt_len')}",
    ]
    for col, s in info["tokens"].items():
        lines.append(f"{col:<11} min {s['min']}  mean {s['mean']}  p50 {s['p50']}  p95 {s['p95']}  max {s['max']}  total {s['total']}")
        lines.append(report.render_histogram(info["histogram"][col]))
    lines.append(f"first rows  ({info['decode_note']})")
    for row in info["first_rows"]:
        extra = "".join(f"  {col} {row[col]:g}" if isinstance(row[col], float) else f"  {col} {row[col]}"
                        for col in ("prompt_len", *SCORE_COLUMNS) if row.get(col) is not None)
        lines.append(f"  row_id {row['row_id']}  source {row['source']}{extra}")
        for col in (c for c in row if isinstance(row[c], dict)):
            body = row[col].get("text")
            shown = repr(body if len(body) <= 400 else body[:400] + "...") if body is not None else row[col]["head"]
            lines.append(f"    {col} ({row[col]['length']} tokens): {shown}")
    return "\n".join(lines)


def _ordinal(index) -> str:
    return str(index + 1) if isinstance(index, int) else repr(index)
