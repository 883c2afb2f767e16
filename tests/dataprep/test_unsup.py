"""`prepare --unsup`: phase 3's PTX blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataprep.format import read_shard
from dataprep.errors import DataprepError
from dataprep import PrepareOptions, prepare
from dataprep.tokenizer import load_tokenizer
from dataprep.verify import verify
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

DOCS = ["The first document.", "", "A second one, a little longer than the first.", None, 7, "   ", "Third and last."]


def write_docs(path: Path, docs: list) -> Path:
    path.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def build(tmp_path: Path, docs_path: Path, block: int, **kw) -> dict:
    opts = PrepareOptions(data=[str(SAMPLE)], out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER), unsup=[str(docs_path)],
                          unsup_block=block, progress=False, **kw)
    return prepare(opts).manifest


def unsup_rows(out: Path, manifest: dict) -> list[list[int]]:
    rows = []
    for record in manifest["unsup"]["shards"]:
        rows += read_shard(out / record["file"]).column("input_ids").to_pylist()
    return rows


def test_blocks_are_the_documents_joined_with_eos_and_cut_exactly(tmp_path):
    manifest = build(tmp_path, write_docs(tmp_path / "docs.jsonl", DOCS), block=8)
    tok = load_tokenizer(str(SAMPLE_TOKENIZER))
    texts = [d for d in DOCS if isinstance(d, str) and d.strip()]
    stream = [i for ids in tok.encode(texts) for i in ids + [tok.eos_id]]
    blocks = len(stream) // 8
    assert unsup_rows(tmp_path / "out", manifest) == [stream[i * 8 : (i + 1) * 8] for i in range(blocks)]
    u = manifest["unsup"]
    assert (u["rows_in"], u["kept"], u["blocks"], u["tail_tokens"]) == (7, 3, blocks, len(stream) - 8 * blocks)
    assert u["dropped"] == {"empty_text": 2, "missing_field": 1, "wrong_type": 1}
    assert u["inputs"][0]["role"] == "unsup" and u["inputs"][0]["files"][0]["sha256"]
    assert verify(tmp_path / "out")[0] == []


def test_blocks_do_not_depend_on_how_the_reader_batches(tmp_path):
    """Many documents through the readers' batches give the same stream as one pass."""
    many = [f"document number {i} " * (i % 5 + 1) for i in range(3000)]
    manifest = build(tmp_path, write_docs(tmp_path / "docs.jsonl", many), block=64)
    tok = load_tokenizer(str(SAMPLE_TOKENIZER))
    stream = np.concatenate([np.asarray(ids + [tok.eos_id]) for ids in tok.encode(many)])
    rows = np.asarray(unsup_rows(tmp_path / "out", manifest))
    assert np.array_equal(rows.ravel(), stream[: rows.size]) and rows.shape[1] == 64


def test_changed_text_rebuilds(tmp_path):
    docs = write_docs(tmp_path / "docs.jsonl", DOCS)
    first = build(tmp_path, docs, block=8)["cache_key"]
    write_docs(docs, DOCS + ["One more document."])
    assert build(tmp_path, docs, block=8)["cache_key"] != first


def test_a_file_without_text_is_one_clear_error(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text('{"x": 1}\n{"x": 2}\n')
    with pytest.raises(DataprepError, match=r"numbers.jsonl: no 'text' column and no other string column"):
        build(tmp_path, path, block=8)


def test_too_little_text_is_an_error(tmp_path):
    with pytest.raises(DataprepError, match="do not fill one block of 4096"):
        build(tmp_path, write_docs(tmp_path / "docs.jsonl", DOCS), block=4096)


def test_cli_prints_the_unsup_counts(tmp_path, capsys):
    from dataprep.cli import main

    docs = write_docs(tmp_path / "docs.jsonl", DOCS)
    code = main(["prepare", "--data", str(SAMPLE), "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(tmp_path / "out"),
                 "--unsup", str(docs), "--unsup-block", "8", "--quiet"])
    assert code == 0
    assert "unsup: 7 documents, kept 3, dropped empty_text 2, missing_field 1, wrong_type 1;" in capsys.readouterr().out


def test_a_missing_unsup_path_names_the_flag(tmp_path):
    with pytest.raises(DataprepError, match=r"^--unsup .*nowhere.jsonl: no such file or directory$"):
        build(tmp_path, tmp_path / "nowhere.jsonl", block=8)
