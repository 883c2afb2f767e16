"""Hello-SimpleAI/HC3-Chinese: config "all" only, first human answer, empty lists dropped."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_jsonl


def test_reads_the_all_config(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", [
        {"id": "0", "question": "什么是HC3?", "human_answers": ["一个语料库。", "b"], "chatgpt_answers": ["c"]},
        {"id": "1", "question": "空?", "human_answers": [], "chatgpt_answers": ["c"]},
        {"id": "2", "question": None, "human_answers": ["x"], "chatgpt_answers": []},
    ])
    write_jsonl(tmp_path / "baike.jsonl", [{"id": "9", "question": "not read", "human_answers": ["x"], "chatgpt_answers": []}])
    sides = read("Hello-SimpleAI/HC3-Chinese", tmp_path)
    rows = sides["train"]
    assert len(rows) == 3  # only the "all" config: the per-source configs repeat its rows
    assert texts(rows[0]) == (" Human: 什么是HC3? Assistant:", " 一个语料库。", None)
    assert reasons(rows) == {None: 1, "empty_answers": 1, "missing_field": 1}
