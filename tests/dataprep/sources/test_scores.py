"""Graders' scores per source (UltraFeedback, SHP, WebGPT, users' columns), the tie rule and
--keep-ties, and a score that is not a number: an error naming the file, row and field."""

from __future__ import annotations

import math

import pytest

from dataprep.errors import DataprepError
from tests.dataprep.sources.native import read, reasons, write_jsonl, write_parquet
from tests.dataprep.sources.test_local import _rows
from tests.dataprep.sources.test_shp import _pair
from tests.dataprep.sources.test_ultrafeedback import _row as binarized
from tests.dataprep.sources.test_webgpt import _row as comparison


def scores(row: dict) -> tuple:
    return row["chosen_score"], row["rejected_score"]


def test_ultrafeedback_binarized_keeps_its_scores_and_drops_ties(tmp_path):
    rows = [binarized("Hi?", "Hello!", "Go."), {**binarized("Tie?", "a", "b"), "score_chosen": 5.0, "score_rejected": 5.0}]
    write_parquet(tmp_path / "data" / "train_prefs-00000-of-00001.parquet", rows)
    train = read("ultrafeedback", tmp_path)["train"]
    assert [scores(r) for r in train] == [(8.0, 4.0), (5.0, 5.0)]
    assert reasons(train) == {None: 1, "tie": 1}
    assert reasons(read("ultrafeedback", tmp_path, keep_ties=True)["train"]) == {None: 2}


def test_webgpt_scores_follow_the_chosen_answer(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [comparison("Worse.", "Better.", -0.5, 0.5), comparison("One.", "Two.", 0.0, 0.0)])
    rows = read("webgpt", tmp_path)["train"]
    assert scores(rows[0]) == (0.5, -0.5) and rows[0]["chosen"] == " Better."
    assert rows[1]["drop_reason"] == "tie"
    kept = read("webgpt", tmp_path, keep_ties=True)["train"][1]
    assert kept["drop_reason"] is None and kept["chosen"] == " One."  # answer_0 first, as DeepSpeed-Chat pairs a tie


def test_shp_scores_are_log_votes_so_the_margin_is_log_score_ratio(tmp_path):
    preferred_b = {**_pair("p1", "A text", "B text", 0, 4.0), "score_A": 5, "score_B": 20}
    no_votes = {**_pair("p2", "x", "y", 1, 2.0), "score_A": 0, "score_B": 3}
    write_jsonl(tmp_path / "askculinary" / "train.json", [preferred_b, no_votes])
    first, second = read("shp", tmp_path)["train"]
    assert first["chosen"] == " B text" and scores(first) == pytest.approx((math.log(20), math.log(5)))
    assert first["chosen_score"] - first["rejected_score"] == pytest.approx(math.log(4.0))
    assert scores(second) == (None, None) and second["drop_reason"] is None


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_user_score_columns_through_columns(tmp_path, suffix):
    path = tmp_path / f"prefs.{suffix}"
    header, lines = "question,good,bad,g,b\n", ["Q1?,yes,no,9,2\n", "Q2?,fine,meh,3,3\n", "Q3?,ok,bad,,1\n"]
    if suffix == "csv":
        path.write_text(header + "".join(lines))
    else:
        write_jsonl(path, [{"question": "Q1?", "good": "yes", "bad": "no", "g": 9, "b": 2}, {"question": "Q2?", "good": "fine", "bad": "meh", "g": 3, "b": 3},
                           {"question": "Q3?", "good": "ok", "bad": "bad", "g": None, "b": 1}])
    _, rows = _rows(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad", "chosen_score": "g", "rejected_score": "b"})
    assert [scores(r) for r in rows] == [(9.0, 2.0), (3.0, 3.0), (None, 1.0)]
    assert [r["drop_reason"] for r in rows] == [None, "tie", None]  # a missing score is no score: no tie


def test_columns_named_like_the_scores_need_no_mapping(tmp_path):
    hh = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad", "chosen_score": 0.75, "rejected_score": "0.25"}
    _, rows = _rows(write_jsonl(tmp_path / "hh.jsonl", [hh]))
    assert scores(rows[0]) == (0.75, 0.25)  # a numeric string, as CSV files hold them, is a number


def test_files_without_scores_have_null_scores(tmp_path):
    name, rows = _rows(write_jsonl(tmp_path / "t.jsonl", [{"prompt": "Q", "chosen": "G", "rejected": "B"}]))
    assert name == "jsonfile" and scores(rows[0]) == (None, None)


@pytest.mark.parametrize("bad, shown", [("high", "'high'"), ("nan", "'nan'"), ("", "''")])
def test_a_score_that_is_not_a_number_is_an_error_naming_the_row_and_field(tmp_path, bad, shown):
    rows = [{"prompt": f"Q{i}", "chosen": "G", "rejected": "B", "chosen_score": "1", "rejected_score": "0"} for i in range(3)]
    rows[2]["chosen_score"] = bad
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataprepError, match=rf"t.jsonl: row 2: field 'chosen_score' is not a number \({shown}\)"):
        _rows(path)


def test_a_score_column_mixing_numbers_and_text_is_an_error_naming_the_line_and_field(tmp_path):
    rows = [{"prompt": f"Q{i}", "chosen": "G", "rejected": "B", "chosen_score": 1.5, "rejected_score": 0} for i in range(3)]
    rows[1]["rejected_score"] = "low"
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataprepError, match=r"t.jsonl:2: field 'rejected_score' is str but .*t.jsonl:1 holds int"):
        _rows(path)


def test_a_webgpt_score_that_is_not_a_number_is_an_error(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [comparison("a.", "b.", "0.5", "-0.5"), comparison("c.", "d.", "high", "low")])
    with pytest.raises(DataprepError, match=r"train.jsonl: row 1: field 'score_0' is not a number \('high'\)"):
        read("webgpt", tmp_path)


def test_an_infinite_score_in_a_numeric_column_is_an_error(tmp_path):
    rows = [{"prompt": "Q", "chosen": "G", "rejected": "B", "chosen_score": x, "rejected_score": 0.0} for x in (1.0, float("inf"))]
    path = write_parquet(tmp_path / "t.parquet", rows)
    with pytest.raises(DataprepError, match=r"t.parquet: row 1: field 'chosen_score' is not a number \(inf\)"):
        _rows(path)
