"""Dahoas/rm-static, full-hh-rlhf (verbatim HH text) and synthetic-instruct-gptj-pairwise (H form, carved)."""

from __future__ import annotations

import pytest

from tests.dataprep.sources.native import read, reasons, texts, write_parquet

P = "\n\nHuman: Hi there\n\nAssistant:"


@pytest.mark.parametrize("name", ["Dahoas/rm-static", "rm-static", "Dahoas/full-hh-rlhf"])
def test_static_text_is_verbatim(tmp_path, name):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [
        {"prompt": P, "response": " r", "chosen": " Hello!", "rejected": " Go away."},
        {"prompt": P, "response": " r", "chosen": " Same", "rejected": " Same"},
        {"prompt": P, "response": " r", "chosen": " ", "rejected": " x"},
        {"prompt": P, "response": " r", "chosen": None, "rejected": " x"},
    ])
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [{"prompt": P, "response": "", "chosen": " a", "rejected": " b"}])
    sides = read(name, tmp_path)
    assert texts(sides["train"][0]) == (P, " Hello!", " Go away.")
    assert reasons(sides["train"]) == {None: 1, "identical_pair": 1, "empty_response": 1, "missing_field": 1}
    assert texts(sides["eval"][0]) == (P, " a", " b")


def test_synthetic_uses_the_single_line_human_form(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [
        {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Rock."},
        {"prompt": "", "chosen": "a", "rejected": "b"},
    ])
    sides = read("Dahoas/synthetic-instruct-gptj-pairwise", tmp_path)
    assert list(sides) == ["train"]  # train only: prepare carves it 9:1
    assert texts(sides["train"][0]) == (" Human: Name a fruit. Assistant:", " Apple.", " Rock.")
    assert reasons(sides["train"]) == {None: 1, "empty_prompt": 1}
