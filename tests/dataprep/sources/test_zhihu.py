"""wangrui6/Zhihu-KOL: SFT-only, single-line Human form, train only."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_parquet


def test_rows(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", [
        {"INSTRUCTION": "如何学习?", "RESPONSE": "多练习。", "SOURCE": "zhihu", "METADATA": "{}"},
        {"INSTRUCTION": "空?", "RESPONSE": None, "SOURCE": "zhihu", "METADATA": "{}"},
    ])
    write_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", [{"INSTRUCTION": " ", "RESPONSE": "x", "SOURCE": "", "METADATA": ""}])
    sides = read("wangrui6/Zhihu-KOL", tmp_path)
    assert list(sides) == ["train"]
    rows = sides["train"]
    assert texts(rows[0]) == (" Human: 如何学习? Assistant:", " 多练习。", None)
    assert reasons(rows) == {None: 1, "missing_field": 1, "empty_prompt": 1}
