"""Checks that a prepared output is exactly what its manifest says.

`check_shard` is the cheap check (size, Arrow structure, schema, metadata, rows, offsets) that every
reader runs before trusting a shard: `inspect`, and the trainer's shard dataset. `verify` adds the
expensive ones (sha256 of every file, the manifest's own content hash, extra files, count arithmetic)
and reports every problem it finds, one line each.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from dataprep import manifest as mf, shards
from dataprep.errors import DataprepError
from dataprep.phases import phase_schema, token_type

PHASE_DIRS = ("phase1", "phase2", "phase3", "unsup")


def check_shard(out: Path, record: dict, phase: int | str, side: str, manifest: dict, full: bool = True) -> pa.Table:
    """Open one listed shard, memory-mapped, after the checks; DataprepError on any mismatch.
    `full=False` keeps to the O(1) checks (size, structure, schema, metadata, rows, buffer sizes);
    `full=True` also walks every offset, O(rows)."""
    path = out / record["file"]
    if not path.is_file():
        raise DataprepError(f"{path}: missing (listed in {mf.NAME}); rerun dataprep prepare")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise DataprepError(f"{path}: {size} bytes but {mf.NAME} says {record['bytes']} (truncated or rewritten); rerun dataprep prepare")
    table = shards.open_shard(path)
    if not table.schema.equals(phase_schema(phase, token_type(manifest["tokenizer"]["vocab_size"]))):
        raise DataprepError(f"{path}: columns {table.schema.names} do not match the phase {phase} schema")
    meta = shards.shard_metadata(table, path)
    expected = {"phase": phase, "side": side, "tokenizer_fingerprint": manifest["tokenizer"]["fingerprint"], "eos_id": manifest["tokenizer"]["eos_id"]}
    wrong = {k: meta.get(k) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        raise DataprepError(f"{path}: shard metadata {wrong} disagrees with {mf.NAME}")
    if table.num_rows != record["rows"]:
        raise DataprepError(f"{path}: {table.num_rows} rows but {mf.NAME} says {record['rows']}")
    try:
        table.validate(full=full)  # full: list offsets in range and non-decreasing
    except pa.ArrowInvalid as exc:
        raise DataprepError(f"{path}: corrupt shard ({str(exc).splitlines()[0]}); rerun dataprep prepare") from None
    return table


def verify(out: Path) -> tuple[list[str], dict]:
    """(problems, counts). No problems means every file is exactly what the manifest says."""
    manifest = mf.read(out)
    problems: list[str] = []
    if manifest.get("content_sha256") != mf.content_hash(manifest):
        problems.append(f"{out / mf.NAME}: edited after it was written (content hash mismatch)")
    listed = set()
    counted = {"shards": 0, "rows": 0, "files": 0}
    for phase, side, info in _parts(manifest):
        kept = 0
        for record in info["shards"]:
            listed.add(record["file"])
            try:
                table = check_shard(out, record, phase, side, manifest)
            except DataprepError as exc:
                problems.append(str(exc))
                continue
            problems += _hash_problem(out, record)
            vocab = manifest["tokenizer"]["vocab_size"]
            for column in (c for c in table.column_names if c.endswith("input_ids")):
                values = table.column(column).combine_chunks().values
                if len(values) and (pc.max(values).as_py() >= vocab or pc.min(values).as_py() < 0):
                    problems.append(f"{out / record['file']}: {column} holds ids outside the vocabulary [0, {vocab})")
            kept += table.num_rows
            counted["shards"] += 1
        counted["rows"] += kept
        if phase == "unsup":  # documents in, blocks out
            if kept != info["blocks"] or info["kept"] + sum(info["dropped"].values()) != info["rows_in"]:
                problems.append(f"{out / mf.NAME}: unsup counts do not add up (blocks {info['blocks']}, in shards {kept}, documents kept {info['kept']}, dropped {sum(info['dropped'].values())}, in {info['rows_in']})")
        # A weighted blend repeats rows of datasets under their quota: rows_in + repeated = kept + dropped.
        elif kept != info["kept"] or info["kept"] + sum(info["dropped"].values()) != info["rows_in"] + info.get("repeated", 0):
            problems.append(f"{out / mf.NAME}: phase {phase} {side} counts do not add up (kept {info['kept']}, in shards {kept}, dropped {sum(info['dropped'].values())}, rows in {info['rows_in']})")
    for record in (t for tables in manifest.get("tables", {}).values() for t in tables):
        listed.add(record["file"])
        path = out / record["file"]
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {mf.NAME})")
        else:
            problems += _hash_problem(out, record)
    for sub in PHASE_DIRS + ("normalized", "dropped"):
        for path in sorted((out / sub).glob("*.arrow")) if (out / sub).is_dir() else []:
            if path.relative_to(out).as_posix() not in listed:
                problems.append(f"{path}: extra file, not listed in {mf.NAME}; remove it or rerun dataprep prepare")
    counted["files"] = len(listed)
    return problems, counted


def _hash_problem(out: Path, record: dict) -> list[str]:
    path = out / record["file"]
    if path.stat().st_size != record["bytes"]:
        return [f"{path}: {path.stat().st_size} bytes but {mf.NAME} says {record['bytes']} (truncated or rewritten)"]
    digest = shards.file_sha256(path)
    if digest != record["sha256"]:
        return [f"{path}: sha256 {digest[:16]}... but {mf.NAME} says {record['sha256'][:16]}... (the bytes changed)"]
    return []


def find_listing(path: Path) -> tuple[Path, dict, dict, int, str] | None:
    """For a shard inside OUT/phaseN/: (out, manifest, record, phase, side), or None for a shard that
    lives outside any prepare output. Raises when the output is unfinished or does not list it."""
    parent = path.resolve().parent
    if parent.name not in PHASE_DIRS:
        return None
    out = parent.parent
    manifest = mf.read(out)
    rel = path.resolve().relative_to(out).as_posix()
    for phase, side, info in _parts(manifest):
        for record in info["shards"]:
            if record["file"] == rel:
                return out, manifest, record, phase, side
    raise DataprepError(f"{path}: not listed in {out / mf.NAME}: left over from an unfinished or older build; rerun dataprep prepare")


def _parts(manifest: dict):
    """(phase, side, record) of every part with shards: phases 1-3 by side, then the unsup blocks."""
    for phase, sides in manifest.get("phases", {}).items():
        for side, info in sides.items():
            yield int(phase), side, info
    if "unsup" in manifest:
        yield "unsup", "train", manifest["unsup"]
