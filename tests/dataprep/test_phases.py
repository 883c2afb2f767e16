"""Token parity: each phase's ids equal what the tokenizer gives for the whole text, as
DeepSpeed-Chat feeds them before padding; and the phase-3 and phase-2 drop counts are exact."""

from __future__ import annotations

import pyarrow as pa
import pytest
from tokenizers import Tokenizer as RustTokenizer

from dataprep.phases import encode_phase
from dataprep import PrepareOptions, prepare
from dataprep.format import read_shard
from dataprep.tokenizer import load_tokenizer
from tests.conftest import GPT2, SHARED_HH, shared_gpt2, shared_hh

MAX_SEQ, MAX_PROMPT = 512, 256


def _rows(*triples) -> pa.Table:
    prompts, chosen, rejected = zip(*triples)
    return pa.table(
        {
            "row_id": pa.array(range(len(triples)), pa.int64()),
            "source": ["t"] * len(triples),
            "prompt": list(prompts),
            "chosen": list(chosen),
            "rejected": list(rejected),
            "assistant_spans": pa.array([None] * len(triples), pa.list_(pa.int32())),  # as the pool holds them
        }
    )


def test_phase_encoders_on_small_rows(bpe_json):
    tok = load_tokenizer(str(bpe_json))
    long = " word" * 50
    rows = _rows(("P: hi A:", " yes", " no"), ("P:" + long + " A:", " a", " b"), ("P: x A:", " sft only", None))
    one = encode_phase(1, tok, rows, max_seq_len=20, max_prompt_len=10)
    assert one.table.column("input_ids")[0].as_py() == tok.encode(["P: hi A: yes"])[0] + [tok.eos_id]
    assert one.truncated == 1 and len(one.table.column("input_ids")[1]) == 20
    prompt_len = one.table.column("prompt_len")[0].as_py()
    assert one.table.column("loss_mask")[0].as_py() == [0] * prompt_len + [1] * (len(tok.encode([" yes"])[0]) + 1)  # the answer and EOS
    two = encode_phase(2, tok, rows, max_seq_len=20, max_prompt_len=10)
    assert two.dropped == {1: "identical_after_truncation", 2: "no_rejected"}
    assert two.table.column("rejected_input_ids")[0].as_py() == tok.encode(["P: hi A: no"])[0] + [tok.eos_id]
    three = encode_phase(3, tok, rows, max_seq_len=20, max_prompt_len=10)
    assert three.dropped == {1: "prompt_too_long"}
    assert three.table.column("prompt_input_ids").to_pylist() == tok.encode(["P: hi A:", "P: x A:"])


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("shared-hh")
    prepare(PrepareOptions(data=["hh"], data_dir=SHARED_HH, out=out, tokenizer=str(GPT2), split="6,2,2", seed=1234, progress=False))
    return out


def _texts(out) -> dict:
    table = pa.ipc.open_file(pa.memory_map(str(next((out / "normalized").glob("*.arrow"))))).read_all()
    return {(r["source"], r["row_id"]): r for r in table.to_pylist()}


def _shard(out, phase: int, side: str) -> pa.Table:
    return pa.concat_tables(read_shard(p) for p in sorted((out / f"phase{phase}").glob(f"{side}-*.arrow")))


@shared_hh
@shared_gpt2
@pytest.mark.parametrize("side", ["train", "eval"])
def test_token_parity_on_real_hh(shared_out, side):
    gpt2 = RustTokenizer.from_file(str(GPT2))
    eos = gpt2.token_to_id("<|endoftext|>")
    texts = _texts(shared_out)

    one = _shard(shared_out, 1, side).to_pylist()
    expected = gpt2.encode_batch([texts[(r["source"], r["row_id"])]["prompt"] + texts[(r["source"], r["row_id"])]["chosen"] for r in one])
    for row, enc in zip(one, expected):
        assert row["input_ids"] == (enc.ids + [eos])[:MAX_SEQ]
        prompt = gpt2.encode(texts[(row["source"], row["row_id"])]["prompt"]).ids
        assert row["input_ids"][: row["prompt_len"]] == prompt[: row["prompt_len"]]
    assert any(len(r["input_ids"]) == MAX_SEQ for r in one), "the real data has texts over 512 tokens"
    if side == "train":
        assert max(len(e.ids) for e in expected) > 2000, "README: texts longer than 2,000 GPT-2 tokens"
        assert {r["source"] for r in one} == {"hh/helpful-online/test", "hh/helpful-rejection-sampled/test"}

    two = _shard(shared_out, 2, side).to_pylist()
    for row in two:
        t = texts[(row["source"], row["row_id"])]
        assert row["chosen_input_ids"] == (gpt2.encode(t["prompt"] + t["chosen"]).ids + [eos])[:MAX_SEQ]
        assert row["rejected_input_ids"] == (gpt2.encode(t["prompt"] + t["rejected"]).ids + [eos])[:MAX_SEQ]
        assert row["chosen_input_ids"] != row["rejected_input_ids"]


@shared_hh
@shared_gpt2
@pytest.mark.parametrize("side", ["train", "eval"])
def test_phase3_filter_counts(shared_out, side):
    import json

    gpt2 = RustTokenizer.from_file(str(GPT2))
    manifest = json.loads((shared_out / "manifest.json").read_text())
    texts = _texts(shared_out)
    candidates = [r for r in texts.values() if r["side"] == side and r["phase"] == 3]
    lengths = [len(gpt2.encode(r["prompt"]).ids) for r in candidates]
    too_long = sum(n > MAX_PROMPT for n in lengths)
    info = manifest["phases"]["3"][side]
    assert info["dropped"].get("prompt_too_long", 0) == too_long > 0
    assert info["kept"] == len(candidates) - too_long
    three = _shard(shared_out, 3, side).to_pylist()
    assert all(len(r["prompt_input_ids"]) <= MAX_PROMPT for r in three)
    assert [r["prompt_input_ids"] for r in three] == [gpt2.encode(texts[(r["source"], r["row_id"])]["prompt"]).ids for r in three]
