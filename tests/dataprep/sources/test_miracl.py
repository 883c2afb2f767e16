"""Cohere/miracl-{zh,ja}-queries-22-12: first positive vs first negative passage; empty lists are drops."""

from __future__ import annotations

import pytest

from tests.dataprep.sources.native import read, reasons, texts, write_jsonl, write_parquet


def _p(text):
    return {"docid": "d", "title": "t", "text": text}


@pytest.mark.parametrize("name", ["Cohere/miracl-zh-queries-22-12", "miracl-ja"])
@pytest.mark.parametrize("write, suffix", [(write_jsonl, "jsonl"), (write_parquet, "parquet")])
def test_rows(tmp_path, name, write, suffix):
    write(tmp_path / f"train.{suffix}", [
        {"query_id": "1", "query": "东京在哪里?", "positive_passages": [_p("日本。"), _p("ignored")], "negative_passages": [_p("法国。")]},
        {"query_id": "2", "query": "q", "positive_passages": [_p("p")], "negative_passages": []},
        {"query_id": "3", "query": "q", "positive_passages": [], "negative_passages": [_p("n")]},
        {"query_id": "4", "query": "q", "positive_passages": [_p("same")], "negative_passages": [_p("same")]},
    ])
    write(tmp_path / f"dev.{suffix}", [{"query_id": "5", "query": "d", "positive_passages": [_p("a")], "negative_passages": [_p("b")]}])
    sides = read(name, tmp_path)
    rows = sides["train"]
    assert texts(rows[0]) == (" Human: 东京在哪里? Assistant:", " 日本。", " 法国。")
    # DeepSpeed-Chat: IndexError on the empty lists (zh), or in get_rejected (ja).
    assert reasons(rows) == {None: 1, "no_negative_passage": 1, "no_positive_passage": 1, "identical_pair": 1}
    assert texts(sides["eval"][0]) == (" Human: d Assistant:", " a", " b")
