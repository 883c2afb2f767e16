"""Phase 1's loss_mask: the span rules, the token rule, a slow character-level reference on the real
HH dialogues, and a chat template with a system prompt and several assistant turns."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer as RustTokenizer

from dataprep import PrepareOptions, prepare
from dataprep.format import read_shard
from dataprep.loss_mask import hh_spans, row_spans, token_mask
from tests.conftest import GPT2, SHARED_HH, shared_gpt2, shared_hh


def test_hh_spans_are_the_assistant_turns():
    prompt = "\n\nHuman: hi\n\nAssistant: hello there\n\nHuman: more?\n\nAssistant:"
    spans = hh_spans(prompt)
    assert [prompt[a:b] for a, b in zip(spans[::2], spans[1::2])] == [" hello there"]
    assert hh_spans(" Human: one line Assistant:") == []  # DeepSpeed-Chat's single-turn form: the answer alone
    twice = "\n\nAssistant: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    assert [twice[a:b] for a, b in zip(hh_spans(twice)[::2], hh_spans(twice)[1::2])] == [" a", " b"]


def test_a_token_is_marked_when_it_overlaps_a_span():
    spans = row_spans("ab", "cd", [0, 1])  # turns [0, 1) and the answer [2, 4)
    offsets = [(0, 0), (0, 1), (1, 2), (1, 3), (3, 4), (4, 4)]  # BOS; in; out; straddling into the answer; in; zero-width
    assert token_mask(offsets, spans).tolist() == [0, 1, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("mask-hh")
    prepare(PrepareOptions(data=["hh"], data_dir=SHARED_HH, out=out, tokenizer=str(GPT2), split="1,0,0", progress=False))
    return out


def assistant_chars(prompt: str, answer: str) -> np.ndarray:
    """The slow reference: a bool per character of prompt + answer, True inside an assistant turn."""
    inside = np.zeros(len(prompt) + len(answer), bool)
    for turn in re.finditer(r"\n\nAssistant:(.*?)(?=\n\nHuman:|\n\nAssistant:|\Z)", prompt, re.S):
        inside[turn.start(1) : turn.end(1)] = True
    inside[len(prompt) :] = True
    return inside


@shared_hh
@shared_gpt2
def test_masks_match_a_character_level_reference_on_real_hh(shared_out):
    gpt2 = RustTokenizer.from_file(str(GPT2))
    normalized = pa.ipc.open_file(pa.memory_map(str(next((shared_out / "normalized").glob("*.arrow"))))).read_all().to_pylist()
    texts = {(r["source"], r["row_id"]): r for r in normalized}
    rows = pa.concat_tables(read_shard(p) for p in sorted((shared_out / "phase1").glob("*.arrow"))).to_pylist()
    multi_turn = 0
    for row in rows:
        text = texts[(row["source"], row["row_id"])]
        inside = assistant_chars(text["prompt"], text["chosen"])
        enc = gpt2.encode(text["prompt"] + text["chosen"])
        n = len(row["input_ids"])
        mask = row["loss_mask"]
        assert len(mask) == n and set(mask) <= {0, 1}
        covered = np.zeros(len(inside), bool)
        for marked, (start, end) in zip(mask, enc.offsets[:n]):
            if marked:
                assert inside[start:end].all(), (row["row_id"], start, end)  # every marked token lies in an assistant turn
                covered[start:end] = True
        cut = enc.offsets[n - 1][1] if n <= len(enc.ids) else len(inside)  # the characters the (possibly truncated) row holds
        assert covered[:cut][inside[:cut]].all(), row["row_id"]  # every assistant character is covered by a marked token
        if n == len(enc.ids) + 1:
            assert mask[-1] == 1  # the EOS ends the final answer
        multi_turn += sum(mask[: row["prompt_len"]]) > 0
    assert multi_turn > len(rows) / 4, "HH's dialogues have earlier assistant turns"


def test_a_chat_template_marks_every_assistant_turn_and_not_the_system_prompt(tmp_path, hf_dir):
    tok = tmp_path / "tok"
    shutil.copytree(hf_dir, tok)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    def conversation(i: int) -> list[dict]:
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Hi there {i}"},
                {"role": "assistant", "content": "Hello friend"}, {"role": "user", "content": "Any news"},
                {"role": "assistant", "content": "None today"}]

    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": conversation(i)}) + "\n" for i in range(12)))
    prepare(PrepareOptions(data=[str(tmp_path / "chat.jsonl")], out=tmp_path / "out", tokenizer=str(tok), template="chat",
                           split="1,0,0", progress=False))
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tok))
    row = pa.concat_tables(read_shard(p) for p in sorted((tmp_path / "out" / "phase1").glob("*.arrow"))).to_pylist()[0]
    marked = [t for t, m in zip(row["input_ids"], row["loss_mask"]) if m]
    # Both turns with their closing tags (the final answer is what the template renders after the prompt),
    # then the EOS; no system, user or header text.
    assert hf.decode(marked) == "Hello friend</assistant>None today</assistant>" + hf.eos_token
    assert sum(row["loss_mask"][: row["prompt_len"]]) == len(hf("Hello friend</assistant>", add_special_tokens=False)["input_ids"])
