"""yitingxie/rlhf-reward-datasets: the "Assistant:" marker moves from the responses to the prompt."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_parquet


def test_marker_moves_to_the_prompt(tmp_path):
    prompt = "\n\nHuman: What is 2+2?\n\n"
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [
        {"prompt": prompt, "chosen": "Assistant: 4", "rejected": "Assistant: 5"},
        {"prompt": prompt, "chosen": "4", "rejected": "Assistant: 5"},
        {"prompt": prompt, "chosen": "Assistant: 4", "rejected": "Assistant: 4"},
    ])
    rows = read("yitingxie/rlhf-reward-datasets", tmp_path)["train"]
    # DeepSpeed-Chat: phase 3 prompt = prompt + "Assistant:", phase 1 text = prompt + chosen; both hold.
    assert texts(rows[0]) == (prompt + "Assistant:", " 4", " 5")
    assert rows[0]["prompt"] + rows[0]["chosen"] == prompt + "Assistant: 4"
    assert reasons(rows) == {None: 1, "no_assistant_turn": 1, "identical_pair": 1}
