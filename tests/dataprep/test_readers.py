"""Input files: every supported format reads, and malformed rows fail with file, line and field."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.errors import DataprepError
from dataprep.readers import read_table

ROWS = [{"prompt": "p1", "chosen": "c1", "rejected": "r1"}, {"prompt": "p2", "chosen": "c2", "rejected": None}]


def _write(path, rows, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "jsonl.gz":
        with gzip.open(path, "wt") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=1))
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "csv":
        path.write_text("prompt,chosen,rejected\np1,c1,r1\np2,c2,\n")


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "parquet", "csv"])
def test_formats(tmp_path, kind):
    path = tmp_path / f"train.{kind}"
    _write(path, ROWS, kind)
    table = read_table(path, ("prompt", "chosen", "rejected"))
    assert table.column("prompt").to_pylist() == ["p1", "p2"]
    assert table.column("chosen").to_pylist() == ["c1", "c2"]
    assert table.column("rejected").to_pylist()[0] == "r1"


def test_json_lines_inside_a_json_suffix(tmp_path):
    path = tmp_path / "train.json"
    _write(path, ROWS, "jsonl")
    assert read_table(path).num_rows == 2


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n{"chosen": "a" "rejected": "b"}\n')
    with pytest.raises(DataprepError, match=r"train.jsonl:2: not valid JSON"):
        read_table(path)


def test_wrong_type_names_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n{"chosen": "a", "rejected": "b"}\n{"chosen": "a", "rejected": 7}\n')
    with pytest.raises(DataprepError, match=r"train.jsonl:3: field 'rejected' is int, expected a string"):
        read_table(path, ("chosen", "rejected"))


def test_wrong_type_in_a_whole_column(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "chosen": [3]}), path)
    with pytest.raises(DataprepError, match=r"row 0: field 'chosen' is int64, expected a string"):
        read_table(path, ("prompt", "chosen"))


def test_not_a_list_of_objects(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[{"chosen": "a"}, 3]')
    with pytest.raises(DataprepError, match=r"expected a JSON list of objects \(element 1\)"):
        read_table(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataprepError, match="train.jsonl.gz: cannot be read"):
        read_table(path)
