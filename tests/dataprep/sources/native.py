"""Helpers for adapter tests: write fixtures in a dataset's native layout, read them back canonical."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.sources import iter_canonical, resolve
from dataprep.sources.options import AdapterOptions


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read(name: str, data_dir: Path, **options) -> dict[str, list[dict]]:
    """Side -> canonical rows of every file of registered dataset `name` in `data_dir`."""
    dataset = resolve(name, data_dir=data_dir)
    out: dict[str, list[dict]] = {}
    for file in dataset.files:
        for batch in iter_canonical(dataset, file, AdapterOptions(**options)):
            out.setdefault(file.side, []).extend(batch.table.to_pylist())
    return out


def reasons(rows: list[dict]) -> Counter:
    return Counter(r["drop_reason"] for r in rows)


def texts(row: dict) -> tuple:
    return row["prompt"], row["chosen"], row["rejected"]
