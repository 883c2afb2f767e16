"""openai/webgpt_comparisons: nested question, score order, citation cleaning, ties dropped."""

from __future__ import annotations

import pytest

from dataprep.sources.webgpt import clean
from tests.dataprep.sources.native import read, reasons, texts, write_jsonl, write_parquet


def _row(a0, a1, s0, s1, q="Why is the sky blue?"):
    return {"question": {"full_text": q, "id": "x", "dataset": "eli5"}, "quotes_0": {"title": [], "extract": []},
            "answer_0": a0, "tokens_0": {"prefix": "p", "completion": "c"}, "score_0": s0, "quotes_1": {"title": [], "extract": []},
            "answer_1": a1, "tokens_1": {"prefix": "p", "completion": "c"}, "score_1": s1}


def test_cleaning_matches_deepspeed_chat():
    assert clean("Rayleigh scattering [1][2] makes it blue (mostly).") == "Rayleigh scattering makes it blue."
    assert clean("the USA (United States) is big") == "the USA is big"
    assert clean("a(b]c [d) e") == "ac e"  # mixed brackets match, non-greedy
    assert clean("x [1\n] y") == "x [1\n] y"  # never across a newline


@pytest.mark.parametrize("write", [write_jsonl, write_parquet])
def test_rows(tmp_path, write):
    write(tmp_path / f"train.{'jsonl' if write is write_jsonl else 'parquet'}", [
        _row("Light scatters [1].", "Because.", 0.5, -0.5),
        _row("Worse [2].", "Better (see 3).", -1.0, 1.0),
        _row("Tie one.", "Tie two.", 0.0, 0.0),
        _row("[1]", "Fine.", 1.0, -1.0),
        _row("a", "b", None, 0.0),
    ])
    rows = read("openai/webgpt_comparisons", tmp_path)["train"]
    q = " Human: Why is the sky blue? Assistant:"
    assert texts(rows[0]) == (q, " Light scatters.", " Because.")
    assert texts(rows[1]) == (q, " Better.", " Worse.")
    assert rows[2]["drop_reason"] == "tie"  # DeepSpeed-Chat would pair answer_0 over answer_1
    assert reasons(rows) == {None: 2, "tie": 1, "empty_response": 1, "missing_field": 1}
