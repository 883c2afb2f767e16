"""`dataprep verify`: a prepared output is exactly what its manifest says.

Every shard gets format.check_shard (size, Arrow structure, schema, metadata, rows, every offset), and
on top: the sha256 of every file, the manifest's own content hash, token ids inside the vocabulary,
one 0/1 loss_mask value per phase-1 token,
no extra files, and the count arithmetic. Every problem found is reported, one line each.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from dataprep.errors import DataprepError
from dataprep.format import LOSS_MASK, MANIFEST, PART_DIRS, TEXT_TABLES, UNSUP, Manifest, check_hash, check_shard


def verify(out: Path) -> tuple[list[str], dict]:
    """(problems, counts). No problems means every file is exactly what the manifest says."""
    manifest = Manifest.read(out)
    problems: list[str] = []
    if not manifest.sealed:
        problems.append(f"{out / MANIFEST}: edited after it was written (content hash mismatch)")
    listed = set()
    counted = {"shards": 0, "rows": 0, "files": 0}
    for phase, side, info in manifest.parts():
        kept = 0
        for record in info["shards"]:
            listed.add(record["file"])
            try:
                table = check_shard(manifest, record, phase, side, hashed=True)
            except DataprepError as exc:
                problems.append(str(exc))
                continue
            vocab = manifest.tokenizer.vocab_size
            for column in (c for c in table.column_names if c.endswith("input_ids")):
                values = table.column(column).combine_chunks().values
                if len(values) and (pc.max(values).as_py() >= vocab or pc.min(values).as_py() < 0):
                    problems.append(f"{out / record['file']}: {column} holds ids outside the vocabulary [0, {vocab})")
            if LOSS_MASK in table.column_names:
                mask = table.column(LOSS_MASK)
                aligned = pc.all(pc.equal(pc.list_value_length(mask), pc.list_value_length(table.column("input_ids")))).as_py() is not False
                if not aligned or pc.max(pc.list_flatten(mask)).as_py() not in (None, 0, 1):
                    problems.append(f"{out / record['file']}: {LOSS_MASK} is not one 0 or 1 per input id")
            kept += table.num_rows
            counted["shards"] += 1
        counted["rows"] += kept
        if phase == UNSUP:  # documents in, blocks out
            if kept != info["blocks"] or info["kept"] + sum(info["dropped"].values()) != info["rows_in"]:
                problems.append(f"{out / MANIFEST}: unsup counts do not add up (blocks {info['blocks']}, in shards {kept}, documents kept {info['kept']}, dropped {sum(info['dropped'].values())}, in {info['rows_in']})")
        # A weighted blend repeats rows of datasets under their quota: rows_in + repeated = kept + dropped.
        elif kept != info["kept"] or info["kept"] + sum(info["dropped"].values()) != info["rows_in"] + info.get("repeated", 0):
            problems.append(f"{out / MANIFEST}: phase {phase} {side} counts do not add up (kept {info['kept']}, in shards {kept}, dropped {sum(info['dropped'].values())}, rows in {info['rows_in']})")
    for record in (t for tables in manifest.data.get("tables", {}).values() for t in tables):
        listed.add(record["file"])
        problems += _table_problem(out / record["file"], record)
    for sub in PART_DIRS + TEXT_TABLES:
        for path in sorted((out / sub).glob("*.arrow")) if (out / sub).is_dir() else []:
            if path.relative_to(out).as_posix() not in listed:
                problems.append(f"{path}: extra file, not listed in {MANIFEST}; remove it or rerun dataprep prepare")
    counted["files"] = len(listed)
    return problems, counted


def _table_problem(path: Path, record: dict) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing (listed in {MANIFEST})"]
    if path.stat().st_size != record["bytes"]:
        return [f"{path}: {path.stat().st_size} bytes but {MANIFEST} says {record['bytes']} (truncated or rewritten)"]
    try:
        check_hash(path, record)
    except DataprepError as exc:
        return [str(exc)]
    return []
