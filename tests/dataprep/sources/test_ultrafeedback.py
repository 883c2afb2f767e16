"""HuggingFaceH4/ultrafeedback_binarized: message lists, rendered in the HH form or a chat template."""

from __future__ import annotations

import pytest

from tests.dataprep.sources.native import read, reasons, texts, write_parquet

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _row(user, good, bad, user_b=None):
    return {"prompt": user, "prompt_id": "id", "score_chosen": 8.0, "score_rejected": 4.0,
            "chosen": [{"role": "user", "content": user}, {"role": "assistant", "content": good}],
            "rejected": [{"role": "user", "content": user_b or user}, {"role": "assistant", "content": bad}],
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": good}]}


@pytest.fixture
def root(tmp_path):
    write_parquet(tmp_path / "data" / "train_prefs-00000-of-00001.parquet", [
        _row("Hi?", "Hello!", "Go."), _row("Hi?", "Same", "Same"), _row("A?", "x", "y", user_b="B?"),
    ])
    write_parquet(tmp_path / "data" / "test_prefs-00000-of-00001.parquet", [_row("T?", "t", "u")])
    write_parquet(tmp_path / "data" / "train_sft-00000-of-00001.parquet", [_row("not", "read", "here")])
    return tmp_path


def test_hh_form(root):
    sides = read("HuggingFaceH4/ultrafeedback_binarized", root)
    assert texts(sides["train"][0]) == ("\n\nHuman: Hi?\n\nAssistant:", " Hello!", " Go.")
    assert reasons(sides["train"]) == {None: 1, "identical_pair": 1, "prompt_mismatch": 1}
    assert len(sides["eval"]) == 1  # train_sft is not read


def test_chat_template(root):
    rows = read("ultrafeedback", root, template="chat", chat_template=TEMPLATE)["train"]
    assert texts(rows[0]) == ("<|user|>Hi?<|end|><|assistant|>", "Hello!<|end|>", "Go.<|end|>")
