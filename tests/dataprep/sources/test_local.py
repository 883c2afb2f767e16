"""Users' own data: DeepSpeed-Chat's local/jsonfile, --columns, chat-message layouts, --template chat."""

from __future__ import annotations

import json

import pytest

from dataprep.errors import DataprepError
from dataprep.sources import iter_canonical, resolve
from dataprep.sources.options import AdapterOptions, parse_columns
from tests.dataprep.sources.native import read, reasons, texts, write_jsonl, write_parquet

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"


def _rows(path, **options) -> tuple[str, list[dict]]:
    dataset = resolve(str(path))
    out, name = [], None
    for batch in iter_canonical(dataset, dataset.files[0], AdapterOptions(**options)):
        out, name = out + batch.table.to_pylist(), batch.adapter
    return name, out


def test_registered_jsonfile_reads_train_and_eval(tmp_path):
    write_jsonl(tmp_path / "train.json", [{"prompt": "Human: q Assistant:", "chosen": "a", "rejected": "b"},
                                          {"prompt": "Human: s Assistant:", "chosen": "only", "rejected": None}])
    write_jsonl(tmp_path / "eval.json", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    sides = read("local/jsonfile", tmp_path)
    assert texts(sides["train"][0]) == (" Human: q Assistant:", " a", " b")
    assert texts(sides["train"][1]) == (" Human: s Assistant:", " only", None)  # SFT-only row: phases 1 and 3
    assert texts(sides["eval"][0]) == (" p", " c", " r")


def test_columns_map_any_names(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "Q", "good": "G", "bad": "B", "prompt": "ignored"},
                                                 {"question": "Q", "good": "G", "bad": "G", "prompt": "ignored"}])
    name, rows = _rows(path, columns=parse_columns("prompt=question,chosen=good,rejected=bad"))
    assert name == "jsonfile" and texts(rows[0]) == (" Q", " G", " B")
    assert reasons(rows) == {None: 1, "identical_pair": 1}


def test_a_missing_mapped_column_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "Q", "good": "G"}])
    with pytest.raises(DataprepError, match=r"mine.jsonl: --columns chosen=best: no column 'best' \(found: question, good\)"):
        _rows(path, columns={"prompt": "question", "chosen": "best"})


@pytest.mark.parametrize("bad", ["prompt", "answer=x", "prompt=a,prompt=b"])
def test_bad_columns_flag(bad):
    with pytest.raises(DataprepError, match="--columns"):
        parse_columns(bad)


def _chat(role, content):
    return {"role": role, "content": content}


def test_chat_pairs_in_the_hh_form(tmp_path):
    history = [_chat("system", "Be brief."), _chat("user", "Hi"), _chat("assistant", "Hello"), _chat("user", "Name?")]
    path = write_parquet(tmp_path / "pairs.parquet", [
        {"chosen": history + [_chat("assistant", "Bob")], "rejected": history + [_chat("assistant", "No")]},
        {"chosen": [_chat("user", "x")], "rejected": [_chat("user", "x"), _chat("assistant", "y")]},
    ])
    name, rows = _rows(path)
    assert name == "chat"
    assert texts(rows[0]) == ("Be brief.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Name?\n\nAssistant:", " Bob", " No")
    assert reasons(rows) == {None: 1, "no_assistant_turn": 1}


def test_chat_replies_with_a_prompt_column_and_no_rejected(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "Q?", "chosen": [_chat("assistant", "A.")]}])
    _, rows = _rows(path)
    assert texts(rows[0]) == ("\n\nHuman: Q?\n\nAssistant:", " A.", None)


def test_messages_layout_is_sft_with_the_chat_template(tmp_path):
    path = write_jsonl(tmp_path / "conv.jsonl", [{"conversation": [_chat("user", "Hi"), _chat("assistant", "Yo")]},
                                                 {"conversation": [_chat("user", "Hi")]}])
    name, rows = _rows(path, columns={"messages": "conversation"}, template="chat", chat_template=TEMPLATE)
    assert name == "messages"
    assert texts(rows[0]) == ("[user]Hi\n[assistant]", "Yo\n", None)
    assert reasons(rows) == {None: 1, "no_assistant_turn": 1}


def test_string_rows_with_the_chat_template(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "Q", "chosen": "G", "rejected": "B"}])
    _, rows = _rows(path, template="chat", chat_template=TEMPLATE)
    assert texts(rows[0]) == ("[user]Q\n[assistant]", "G\n", "B\n")


def test_template_errors_and_mismatches_are_counted(tmp_path):
    raising = "{% if messages|length > 1 %}{{ raise_exception('one turn only') }}{% endif %}{{ messages[0]['content'] }}"
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "Q", "chosen": "G", "rejected": "B"}])
    _, rows = _rows(path, template="chat", chat_template=raising)
    assert reasons(rows) == {"template_error": 1}


def test_strict_names_the_row_and_field(tmp_path):
    write_parquet(tmp_path / "data" / "train.parquet", [{"INSTRUCTION": "a", "RESPONSE": "b"}, {"INSTRUCTION": "c", "RESPONSE": None}])
    with pytest.raises(DataprepError, match=r"train.parquet: row 1: field 'RESPONSE' is missing or null \(--strict\)"):
        read("zhihu-kol", tmp_path, strict=True)


def test_an_empty_csv_cell_is_null_as_in_jsonl(tmp_path):
    """An empty rejected cell makes the row SFT-only, as a null rejected does in jsonl."""
    (tmp_path / "pairs.csv").write_text('prompt,chosen,rejected\nQ1,A1,B1\nQ2,A2,\nQ3,A3,""\n')
    rows = [{"prompt": "Q1", "chosen": "A1", "rejected": "B1"}, {"prompt": "Q2", "chosen": "A2", "rejected": None},
            {"prompt": "Q3", "chosen": "A3", "rejected": None}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    csv, jsonl = _rows(tmp_path / "pairs.csv"), _rows(tmp_path / "pairs.jsonl")
    assert csv == jsonl and [(r["rejected"], r["drop_reason"]) for r in csv[1]] == [(" B1", None), (None, None), (None, None)]

