"""Input files: every supported format and every oddity users' files have is read correctly, and
every kind of malformed file fails with its file, line or row, and field."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.errors import DataprepError
from dataprep.readers import INVALID, read_table

ROWS = [{"prompt": "p1", "chosen": "c1", "rejected": "r1"}, {"prompt": "p2", "chosen": "c2", "rejected": None}]
TEXT = ("prompt", "chosen", "rejected")


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
    table = read_table(path, TEXT)
    assert table.column("prompt").to_pylist() == ["p1", "p2"]
    assert table.column("chosen").to_pylist() == ["c1", "c2"]
    assert table.column("rejected").to_pylist() == ["r1", None]  # CSV: an empty cell is null


def test_json_lines_inside_a_json_suffix(tmp_path):
    path = tmp_path / "train.json"
    _write(path, ROWS, "jsonl")
    assert read_table(path).num_rows == 2


@pytest.mark.parametrize("fast", [True, False], ids=["pyarrow", "python"])
def test_bom_crlf_blank_lines_and_unicode(tmp_path, fast):
    rows = [{"chosen": "héllo 日本 🍞", "rejected": "b"}, {"chosen": "c", "rejected": "d"}]
    if not fast:  # a mixed-type extra column sends the file down the Python path
        rows[0]["chosen"], rows[1]["chosen"] = "héllo 日本 🍞", 5
    body = "\r\n\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n\r\n"
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    table = read_table(path, ("chosen", "rejected"))
    assert table.num_rows == 2
    assert table.column("chosen")[0].as_py() == "héllo 日本 🍞"


def test_json_array_with_bom(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    assert read_table(path, TEXT).num_rows == 2


def test_a_record_over_10_mb(tmp_path):
    big = "x" * (11 << 20)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"chosen": big, "rejected": "b"}) + "\n" + json.dumps({"chosen": "a", "rejected": "b"}) + "\n")
    table = read_table(path, ("chosen", "rejected"))
    assert len(table.column("chosen")[0].as_py()) == len(big)


def test_one_bad_value_marks_the_row(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n{"chosen": "a", "rejected": 7}\n{"chosen": "a", "rejected": "c"}\n')
    table = read_table(path, ("chosen", "rejected"))
    assert table.column(INVALID).to_pylist() == [None, "wrong_type:rejected", None]
    assert table.column("rejected").to_pylist() == ["b", None, "c"]
    with pytest.raises(DataprepError, match=r"train.jsonl:2: field 'rejected' is int, expected a string \(--strict\)"):
        read_table(path, ("chosen", "rejected"), strict=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"chosen": "a", "rejected": "b"}\n{"chosen": "a" "rejected": "b"}\n', r"train.jsonl:2: not valid JSON"),
        (b'{"chosen": "a", "rejected": "b"}\n{"chosen": "caf\xe9", "rejected": "b"}\n', r"train.jsonl:2: not valid UTF-8 \(byte 0xe9"),
        (b"", r"train.jsonl: empty file"),
        (b"\n\n", r"train.jsonl: empty file"),
        (b'{"chosen": "a"}\n[1, 2]\n', r"train.jsonl:2: expected a JSON object, got list"),
        (b'{"chosen": "a", "n": 1}\n{"chosen": "b", "n": "one"}\n', r"train.jsonl:2: field 'n' is str but .*:1 holds int"),
    ],
    ids=["bad-json", "not-utf8", "empty", "blank", "not-an-object", "mixed-column"],
)
def test_fatal_jsonl_problems(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataprepError, match=message):
        read_table(path, ("chosen", "rejected"))


def test_wrong_type_throughout_is_fatal(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"prompt": ["p", "q"], "chosen": [3, 4]}), path)
    with pytest.raises(DataprepError, match=r"column 'chosen' is not text in any row \(int64\)"):
        read_table(path, ("prompt", "chosen"))
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"chosen": 1, "rejected": "a"}\n{"chosen": 2, "rejected": "b"}\n')
    with pytest.raises(DataprepError, match=r"column 'chosen' is not text in any row"):
        read_table(jsonl, ("chosen", "rejected"))


def test_not_an_array_of_objects(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[{"chosen": "a"}, 3]')
    with pytest.raises(DataprepError, match=r"train.json: element 1: expected a JSON object, got int"):
        read_table(path)


def test_gzip_cut_short(tmp_path):
    whole = gzip.compress(("".join(json.dumps(r) + "\n" for r in ROWS * 2000)).encode())
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataprepError, match=r"train.jsonl.gz: truncated or damaged gzip file"):
        read_table(path, TEXT)


def test_gzip_that_is_not_gzip(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(b'{"chosen": "a"}\n')
    with pytest.raises(DataprepError, match=r"train.jsonl.gz: not a gzip file"):
        read_table(path, TEXT)


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("hello")
    with pytest.raises(DataprepError, match=r"train.parquet: cannot be read as parquet"):
        read_table(path, TEXT)
