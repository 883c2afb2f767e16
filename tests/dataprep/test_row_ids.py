"""(source, row_id) names one native input row: row_id is the row's index in its file (a ranking's pairs
share their row's), and no two files share a source label, not train.jsonl beside train.parquet in one
directory, nor two datasets of the same name."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import dataprep
from tests.conftest import SAMPLE_TOKENIZER


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(tmp_path: Path, *data: Path, **options) -> dataprep.Prepared:
    return dataprep.prepare(data=[str(d) for d in data], out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER), split="1,1,1",
                            progress=False, **options)


def texts(result: dataprep.Prepared) -> list[dict]:
    """Every normalized and dropped row of the output, with its source, row_id and prompt."""
    tables = [pa.ipc.open_file(str(p)).read_all() for sub in ("normalized", "dropped") for p in sorted((result.out / sub).glob("*.arrow"))]
    return [row for t in tables for row in t.select(["source", "row_id", "prompt"]).to_pylist()]


def test_a_rankings_pairs_carry_their_native_row(tmp_path):
    sizes = [(1, 2, 3, 3)[i % 4] for i in range(80)]
    rows = [{"prompt": f"Question {i}?", "responses": [f"a{i}", f"b{i}", f"c{i}"][:k], "scores": [3, 2, 1][:k]} for i, k in enumerate(sizes)]
    result = run(tmp_path, write_jsonl(tmp_path / "ranked.jsonl", rows), pairs="all")
    found = texts(result)  # the pairs, the rankings of one response, and the rows a phase dropped
    assert sum(r["source"] == "ranked" and r["prompt"] == f" Question {r['row_id']}?" for r in found) == len(found) > 160
    assert sorted({r["row_id"] for r in found}) == list(range(len(rows)))
    phase2 = result.phase(2, "train").table.column("row_id").to_pylist()
    assert phase2 and all(0 <= i < len(rows) for i in phase2)


def test_no_two_files_or_datasets_share_a_source_label(tmp_path):
    pairs = [{"prompt": f"Q{i}?", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(30)]
    write_jsonl(tmp_path / "a" / "data" / "train.jsonl", pairs[:15])
    pq.write_table(pa.Table.from_pylist(pairs[15:]), tmp_path / "a" / "data" / "train.parquet")
    write_jsonl(tmp_path / "b" / "data" / "train.jsonl", [{**r, "prompt": "B " + r["prompt"]} for r in pairs])
    result = run(tmp_path, tmp_path / "a" / "data", tmp_path / "b" / "data")
    assert [[f["source"] for f in d["files"]] for d in result.manifest["inputs"]] == [
        ["data/train.jsonl", "data/train.parquet"], ["data-2/train"]]
    by_key = defaultdict(set)
    for r in texts(result):
        by_key[r["source"], r["row_id"]].add(r["prompt"])
    assert len(by_key) == 60 and all(len(p) == 1 for p in by_key.values())
    native = {"data/train.jsonl": pairs[:15], "data/train.parquet": pairs[15:], "data-2/train": [{"prompt": "B " + r["prompt"]} for r in pairs]}
    assert all(prompts == {" " + native[source][row_id]["prompt"]} for (source, row_id), prompts in by_key.items())
