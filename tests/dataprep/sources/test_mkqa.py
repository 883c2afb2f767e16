"""mkqa (Chinese and Japanese views of one dataset): nested queries/answers, unanswerable rows dropped."""

from __future__ import annotations

import pytest

from dataprep.errors import DataprepError
from dataprep.sources import resolve
from tests.dataprep.sources.native import read, reasons, texts, write_jsonl


def _row(zh, ja, zh_answers, ja_answers):
    return {"example_id": 1, "query": "q", "queries": {"en": "q", "zh_cn": zh, "ja": ja},
            "answers": {"en": [{"type": "entity", "entity": "e", "text": "a", "aliases": []}], "zh_cn": zh_answers, "ja": ja_answers}}


def _answer(text):
    return [{"type": "entity" if text else "unanswerable", "entity": "", "text": text, "aliases": []}]


def _write(root):
    write_jsonl(root / "mkqa.jsonl", [
        _row("首都?", "首都は?", _answer("北京"), _answer("東京")),
        _row("无答?", "答えなし?", _answer(None), _answer(None)),
        _row("空?", "空?", [], []),
    ])


@pytest.mark.parametrize("name, expected", [
    ("mkqa-Chinese", (" Human: 首都? Assistant:", " 北京", None)),
    ("mkqa-Japanese", (" Human: 首都は? Assistant:", " 東京", None)),
])
def test_language_views(tmp_path, name, expected):
    _write(tmp_path)
    rows = read(name, tmp_path)["train"]
    assert texts(rows[0]) == expected
    assert reasons(rows) == {None: 1, "no_answer": 1, "empty_answers": 1}


def test_the_shared_hub_id_needs_a_language(tmp_path):
    with pytest.raises(DataprepError, match="mkqa-zh, mkqa-ja"):
        resolve("apple/mkqa", data_dir=tmp_path)
