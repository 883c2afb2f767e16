"""lmqg/qg_jaquad (question -> sentence) and lmqg/qag_jaquad (questions[0] -> paragraph)."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_parquet


def test_qg(tmp_path):
    write_parquet(tmp_path / "qg_jaquad" / "train" / "0000.parquet", [
        {"answer": "東京", "question": "首都は?", "sentence": "首都は東京です。", "paragraph": "長い段落。", "sentence_answer": "", "paragraph_answer": ""},
        {"answer": "x", "question": "q", "sentence": "", "paragraph": "p", "sentence_answer": "", "paragraph_answer": ""},
    ])
    write_parquet(tmp_path / "qg_jaquad" / "validation" / "0000.parquet", [
        {"answer": "a", "question": "v?", "sentence": "s", "paragraph": "p", "sentence_answer": "", "paragraph_answer": ""}])
    write_parquet(tmp_path / "qg_jaquad" / "test" / "0000.parquet", [
        {"answer": "a", "question": "t?", "sentence": "s", "paragraph": "p", "sentence_answer": "", "paragraph_answer": ""}])
    sides = read("lmqg/qg_jaquad", tmp_path)
    assert texts(sides["train"][0]) == (" Human: 首都は? Assistant:", " 首都は東京です。", None)
    assert reasons(sides["train"]) == {None: 1, "empty_response": 1}
    assert [texts(r)[0] for r in sides["eval"]] == [" Human: v? Assistant:"]  # test split not read


def test_qag(tmp_path):
    write_parquet(tmp_path / "data" / "train.parquet", [
        {"paragraph": "段落。", "questions": ["一つ目?", "二つ目?"], "answers": ["a", "b"], "questions_answers": ""},
        {"paragraph": "段落。", "questions": [], "answers": [], "questions_answers": ""},
    ])
    rows = read("qag-jaquad", tmp_path)["train"]
    assert texts(rows[0]) == (" Human: 一つ目? Assistant:", " 段落。", None)
    assert reasons(rows) == {None: 1, "empty_questions": 1}
