"""Rankings -> pairs: the three --pairs rules, ties, ranks against scores, the checks on each pair, the
users' layout and the registered openbmb/UltraFeedback (hub layout, local copies shaped like it), and
the bad input that stops prepare with one line naming the file, row and field."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dataprep.errors import DataprepError
from dataprep.sources.ranking import Ranking, pairs_table
from dataprep.sources.rows import Row
from dataprep.sources.ultrafeedback_raw import read_fields
from tests.dataprep.sources.native import read, reasons, texts, write_jsonl, write_parquet
from tests.dataprep.sources.test_local import _rows
from tests.dataprep.sources.test_ultrafeedback import TEMPLATE


def completion(response, score):
    return {"model": "m", "principle": "helpfulness", "custom_system_prompt": "Be helpful.", "response": response,
            "annotations": {"helpfulness": {"Rating": "4", "Rationale": "fine"}}, "critique": "ok", "overall_score": score,
            "fine-grained_score": 4.0}


def ultrafeedback(instruction, *scored):
    return {"source": "flan", "instruction": instruction, "models": ["m"] * len(scored), "correct_answers": [], "incorrect_answers": [],
            "completions": [completion(r, s) for r, s in scored]}


def pairs(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen"], r["rejected"]) for r in rows]


@pytest.mark.parametrize("rule, expected", [
    ("best-vs-rest", [("b", "a"), ("b", "d"), ("b", "c")]),
    ("best-vs-worst", [("b", "c")]),
    ("all", [("b", "a"), ("b", "d"), ("b", "c"), ("a", "d"), ("a", "c"), ("d", "c")]),
])
def test_rules_pair_the_best_first_order_and_keep_native_row_order(rule, expected):
    texts_ = ["a", "b", "c", "d"]
    ranking = Ranking("Q", texts_, "P", texts_, [7.0, 9.0, 1.0, 7.0], [7.0, 9.0, 1.0, 7.0])
    skipped, single = Row(None, None, None, "missing_field"), Ranking("Q2", ["x"], "P2", ["x"], [1.0], None)
    rows = pairs_table([skipped, ranking, single], rule, keep_ties=True).to_pylist()
    assert rows[0]["drop_reason"] == "missing_field" and rows[-1]["drop_reason"] == "too_few_responses"
    assert [(r["chosen"], r["rejected"]) for r in rows[1:-1]] == expected  # equal scores keep their list order (a before d)
    assert all(r["chosen_score"] >= r["rejected_score"] for r in rows[1:-1])


def test_ultrafeedback_raw_from_a_local_copy_in_the_hub_layout(tmp_path):
    write_jsonl(tmp_path / "flan.jsonl", [ultrafeedback("Sum 2+2?", ("4", 9.0), ("5", 2.0), ("four", 7.5), ("22", 1.0))])
    write_jsonl(tmp_path / "sharegpt.jsonl", [ultrafeedback("Hi?", ("Hello!", 8.0))])
    rows = read("openbmb/UltraFeedback", tmp_path)["train"]  # train only: carved 9:1 later
    assert texts(rows[0]) == ("\n\nHuman: Sum 2+2?\n\nAssistant:", " 4", " four")  # ultrafeedback_binarized's text
    assert pairs(rows[:3]) == [(" 4", " four"), (" 4", " 5"), (" 4", " 22")]
    assert [(r["chosen_score"], r["rejected_score"]) for r in rows[:3]] == [(9.0, 7.5), (9.0, 2.0), (9.0, 1.0)]
    assert rows[3]["drop_reason"] == "too_few_responses" and rows[3]["chosen"] is None
    assert read("ultrafeedback-raw", tmp_path, pairs="best-vs-worst")["train"][0]["rejected"] == " 22"
    assert len(read("ultrafeedback-raw", tmp_path, pairs="all")["train"]) == 6 + 1


def test_ultrafeedback_raw_with_a_chat_template(tmp_path):
    write_jsonl(tmp_path / "flan.jsonl", [ultrafeedback("Hi?", ("Hello!", 8.0), ("Go.", 4.0))])
    rows = read("ultrafeedback-raw", tmp_path, template="chat", chat_template=TEMPLATE)["train"]
    assert texts(rows[0]) == ("<|user|>Hi?<|end|><|assistant|>", "Hello!<|end|>", "Go.<|end|>")


def test_ties_empty_and_identical_responses_are_dropped_per_pair(tmp_path):
    write_jsonl(tmp_path / "flan.jsonl", [ultrafeedback("Q?", ("a", 9.0), ("b", 9.0), ("", 5.0), ("a", 3.0))])
    rows = read("ultrafeedback-raw", tmp_path)["train"]
    assert [r["drop_reason"] for r in rows] == ["tie", "empty_response", "identical_pair"]
    assert [r["drop_reason"] for r in read("ultrafeedback-raw", tmp_path, keep_ties=True)["train"]] == [None, "empty_response", "identical_pair"]


def test_users_ranks_order_without_becoming_scores(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [{"prompt": "Q?", "responses": ["b", "a", "c"], "ranks": [2, 1, 2]}])
    name, rows = _rows(path, pairs="all")
    assert name == "ranking"
    assert [(*texts(r), r["drop_reason"]) for r in rows] == [(" Q?", " a", " b", None), (" Q?", " a", " c", None), (" Q?", " b", " c", "tie")]
    assert all(r["chosen_score"] is None and r["rejected_score"] is None for r in rows)


def test_users_scores_through_columns(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [{"q": "Q?", "answers": ["x", "y"], "rating": [1, 3.5]}])
    _, rows = _rows(path, columns={"prompt": "q", "responses": "answers", "scores": "rating"})
    assert [(r["chosen"], r["rejected"], r["chosen_score"], r["rejected_score"]) for r in rows] == [(" y", " x", 3.5, 1.0)]


def test_a_null_score_drops_the_ranking(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [{"prompt": "Q?", "responses": ["x", "y"], "scores": [1.0, None]}])
    _, rows = _rows(path)
    assert reasons(rows) == {"missing_field": 1}
    with pytest.raises(DataprepError, match=r"ranked.jsonl: row 0: field 'scores' is missing or null \(--strict\)"):
        _rows(path, strict=True)


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q?", "responses": ["x", "y"], "ranks": [1, 2, 3]}, r"row 1: field 'ranks' has 3 entries for 2 responses"),
    ({"prompt": "Q?", "responses": ["x", "y"], "scores": [1, 2, 3]}, r"row 1: field 'scores' has 3 entries for 2 responses"),
])
def test_lists_of_other_lengths_are_errors_naming_the_row_and_field(tmp_path, row, message):
    good = {"prompt": "P?", "responses": ["x", "y"], **{k: [1, 2] for k in row if k in ("ranks", "scores")}}
    path = write_jsonl(tmp_path / "ranked.jsonl", [good, row])
    with pytest.raises(DataprepError, match=r"ranked.jsonl: " + message):
        _rows(path)


def test_a_ranking_score_that_is_not_a_number_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [{"prompt": "P?", "responses": ["x", "y"], "scores": ["1", "2"]},
                                                   {"prompt": "Q?", "responses": ["x", "y"], "scores": ["1", "much"]}])
    with pytest.raises(DataprepError, match=r"ranked.jsonl: row 1: field 'scores' is not a number \('much'\)"):
        _rows(path)
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "Q?", "responses": ["x", "y"], "scores": [1, "much"]}])
    with pytest.raises(DataprepError, match=r"mixed.jsonl:1: field 'scores' holds \[1, 'much'\]"):
        _rows(mixed)


def test_a_responses_list_needs_exactly_one_order(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [{"prompt": "Q?", "responses": ["x", "y"]}])
    with pytest.raises(DataprepError, match=r"ranked.jsonl: a 'responses' list needs exactly one of 'ranks' or 'scores' beside it"):
        _rows(path)


@pytest.mark.parametrize("write, suffix", [(write_jsonl, ".jsonl"), (write_parquet, ".parquet")])
def test_each_row_of_a_ranking_is_checked_not_only_the_first(tmp_path, write, suffix):
    """The layout comes from the columns: a first row with null responses or a null order is a counted
    drop, and any row giving both ranks and scores is an error naming it."""
    good = [{"prompt": f"Q{i}?", "responses": ["x", "y"], "ranks": [2, 1], "scores": None} for i in range(3)]
    nulls = [{"prompt": "A?", "responses": None, "ranks": None, "scores": None}, {"prompt": "B?", "responses": ["x", "y"], "ranks": None, "scores": None}]
    name, rows = _rows(write(tmp_path / f"ranked{suffix}", nulls + good + [{**good[0], "scores": [1.0, 2.0], "ranks": None}]))
    assert name == "ranking" and [r["drop_reason"] for r in rows] == ["missing_field"] * 2 + [None] * 4
    assert [r["chosen_score"] for r in rows[2:]] == [None] * 3 + [2.0]
    both = write(tmp_path / f"both{suffix}", nulls + good + [{**good[0], "scores": [1.0, 2.0]}])
    with pytest.raises(DataprepError, match=r"both\.[a-z]+: row 5: field 'ranks' and 'scores' are both given: a 'responses' list needs exactly one"):
        _rows(both)


def test_ultrafeedback_raw_reads_parquet_and_counts_bad_completions(tmp_path):
    rows = [ultrafeedback("A?", ("x", 2.0), ("y", 1.0)), {**ultrafeedback("B?", ("x", 2.0)), "completions": None},
            {**ultrafeedback("C?", ("x", 2.0)), "completions": [completion("x", 1.0), None]},
            {**ultrafeedback("D?", ("x", 2.0)), "completions": [{**completion("x", 1.0), "response": None}, completion("y", 2.0)]}]
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", rows)
    assert [r["drop_reason"] for r in read("ultrafeedback-raw", tmp_path)["train"]] == [None, "missing_field", "wrong_type", "missing_field"]


def test_only_the_completion_fields_read_are_converted_whatever_the_slice():
    table = pa.Table.from_pylist([ultrafeedback(f"Q{i}?", *((f"r{i}{k}", float(k)) for k in range(i % 3))) for i in range(6)])
    table = pa.concat_tables([table.slice(1, 3), table.slice(4)])  # chunks with offsets into their buffers
    projected = read_fields(table).column("completions").to_pylist()
    expected = [[{"response": c["response"], "overall_score": c["overall_score"]} for c in row] for row in table.column("completions").to_pylist()]
    assert projected == expected and read_fields(table.drop_columns(["completions"])).num_columns == table.num_columns - 1
