"""pvduy/sharegpt_alpaca_oa_vicuna_format: SFT-only; only turn markers are renamed."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_parquet


def test_markers_only(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [
        {"prompt": "USER: my USERNAME is bob ASSISTANT: hi bob\nUSER: what is an ASSISTANT:? ASSISTANT:", "label": "A helper."},
        {"prompt": "", "label": "x"},
        {"prompt": "USER: q ASSISTANT:", "label": None},
    ])
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [{"prompt": "USER: t ASSISTANT:", "label": "u"}])
    sides = read("pvduy/sharegpt_alpaca_oa_vicuna_format", tmp_path)
    rows = sides["train"]
    # DeepSpeed-Chat would also write "HumanNAME" and "an Assistant:?"; the marker after whitespace is renamed.
    assert texts(rows[0]) == ("Human: my USERNAME is bob Assistant: hi bob\nHuman: what is an Assistant:? Assistant:", " A helper.", None)
    assert reasons(rows) == {None: 1, "empty_prompt": 1, "missing_field": 1}
    assert texts(sides["eval"][0]) == ("Human: t Assistant:", " u", None)
