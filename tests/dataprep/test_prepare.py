"""End to end on the shipped sample: accounting, split parity through the pipeline, zero-copy shards,
byte-identical rebuilds, reuse and rebuild, local files, blending and degenerate splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep import phases
from dataprep.errors import DataprepError
from dataprep import PrepareOptions, prepare
from dataprep.split import Split, shuffle_index
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER


def _opts(out: Path, data=None, **kw) -> PrepareOptions:
    return PrepareOptions(data=data or [str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), progress=False, **kw)


def _read(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _phase(out: Path, phase: int, side: str) -> pa.Table:
    return pa.concat_tables(_read(p) for p in sorted((out / f"phase{phase}").glob(f"{side}-*.arrow")))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    result = prepare(_opts(out, split="6,2,2"))
    return out, result.manifest


def test_layout(sample):
    out, manifest = sample
    for phase in ("1", "2", "3"):
        for side in ("train", "eval"):
            files = [s["file"] for s in manifest["phases"][phase][side]["shards"]]
            assert files == [f"phase{phase}/{side}-00000-of-00001.arrow"]
            assert (out / files[0]).is_file()
    assert sorted(p.name for p in out.iterdir()) == [".dataprep.lock", "dropped", "manifest.json", "normalized", "phase1", "phase2", "phase3"]


def test_counts_add_up_to_the_input_rows(sample):
    out, manifest = sample
    (dataset,) = manifest["inputs"]
    file_rows = {f["side"]: f["rows"] for f in dataset["files"]}
    assert file_rows == {"train": 400, "eval": 100} == dataset["rows"]
    for side, n in file_rows.items():
        assert sum(dataset["split"][side]) == n
        assert sum(manifest["phases"][p][side]["rows_in"] for p in "123") + dataset["unused_rows"][side] == n
    for phase in manifest["phases"].values():
        for info in phase.values():
            assert info["kept"] + sum(info["dropped"].values()) == info["rows_in"]
            assert info["kept"] == sum(s["rows"] for s in info["shards"])
    normalized = _read(out / "normalized" / "sample-hh.arrow")
    dropped = _read(out / "dropped" / "sample-hh.arrow")
    parse_drops = sum(v for f in dataset["files"] for v in f["dropped"].values())
    assert dataset["screened"]["duplicate"] > 0  # the sample repeats rows
    assert normalized.num_rows + parse_drops + sum(dataset["screened"].values()) == 500
    all_drops = sum(sum(i["dropped"].values()) for p in manifest["phases"].values() for i in p.values())
    assert dropped.num_rows == all_drops
    # The sample plants every parse-time drop reason.
    reasons = set(dropped.column("reason").to_pylist())
    assert {"identical_pair", "empty_response", "prompt_mismatch", "no_assistant_turn", "prompt_too_long", "duplicate"} <= reasons


def test_phase_rows_follow_deepspeed_chat_indices(sample):
    out, manifest = sample
    normalized = _read(out / "normalized" / "sample-hh.arrow").to_pylist()
    kept = {(r["side"], r["row_id"]) for r in normalized}
    dropped = {(r["side"], r["row_id"]) for r in _read(out / "dropped" / "sample-hh.arrow").to_pylist()}
    for side, n in (("train", 400), ("eval", 100)):
        for phase, index in zip((1, 2, 3), Split.parse("6,2,2").indices(1234, n)):
            expected = [int(i) for i in index if (side, int(i)) in kept and (side, int(i)) not in dropped]
            assert _phase(out, phase, side).column("row_id").to_pylist() == expected


def test_shards_are_memory_mapped_without_copying(sample):
    out, _ = sample
    path = out / "phase1" / "train-00000-of-00001.arrow"
    before = pa.total_allocated_bytes()
    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    column = table.column("input_ids").chunk(0)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)
    assert column.type.value_type == pa.uint16(), "a 2,048-token vocabulary fits 16-bit ids"
    values = np.frombuffer(column.values.buffers()[1], dtype=np.uint16)
    row = values[offsets[5] : offsets[6]]
    assert pa.total_allocated_bytes() == before, "reading a shard must not allocate"
    assert row.tolist() == column[5].as_py()
    meta = json.loads(table.schema.metadata[b"dataprep"])
    assert (meta["phase"], meta["side"], meta["eos_id"]) == (1, "train", 0)


def test_rebuild_is_byte_identical_whatever_the_chunking(sample, tmp_path, monkeypatch):
    out, manifest = sample
    monkeypatch.setattr(phases, "ENCODE_CHUNK", 7)
    again = prepare(_opts(tmp_path / "again", split="6,2,2")).manifest
    for phase in manifest["phases"]:
        for side in ("train", "eval"):
            assert [s["sha256"] for s in again["phases"][phase][side]["shards"]] == [
                s["sha256"] for s in manifest["phases"][phase][side]["shards"]
            ]
    assert again["cache_key"] == manifest["cache_key"]


def test_reuse_and_rebuild(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    out = tmp_path / "out"
    first = prepare(_opts(out, [str(data)]))
    assert not first.reused
    assert prepare(_opts(out, [str(data)])).reused
    assert not prepare(_opts(out, [str(data)], max_seq_len=256)).reused  # an option changed
    assert prepare(_opts(out, [str(data)], max_seq_len=256)).reused
    lines = (data / "train.jsonl").read_text().splitlines(keepends=True)
    (data / "train.jsonl").write_text("".join(lines[:-1]))  # an input changed
    rebuilt = prepare(_opts(out, [str(data)], max_seq_len=256))
    assert not rebuilt.reused and rebuilt.manifest["inputs"][0]["rows"]["train"] == 399
    (out / "phase2" / "eval-00000-of-00001.arrow").unlink()  # an output file went missing
    assert not prepare(_opts(out, [str(data)], max_seq_len=256)).reused


def test_a_failed_build_leaves_the_previous_output_intact(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    out = tmp_path / "out"
    good = prepare(_opts(out, [str(data)])).manifest
    (data / "train.jsonl").write_text('{"chosen": "x"}\n')
    with pytest.raises(DataprepError, match="missing column"):
        prepare(_opts(out, [str(data)]))
    assert json.loads((out / "manifest.json").read_text())["cache_key"] == good["cache_key"]
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_local_prompt_chosen_rejected_files(tmp_path):
    rows = [{"prompt": f"Human: question {i} Assistant:", "chosen": f"good {i}", "rejected": None if i % 5 == 0 else f"bad {i}"} for i in range(60)]
    rows[27]["rejected"] = rows[27]["chosen"]
    src = tmp_path / "mine"
    src.mkdir()
    (src / "train.json").write_text(json.dumps(rows))  # a JSON list, DeepSpeed-Chat's jsonfile layout
    (src / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    out = tmp_path / "out"
    manifest = prepare(_opts(out, [str(src)], split="4,4,2")).manifest
    assert [f["side"] for f in manifest["inputs"][0]["files"]] == ["eval", "train"]
    assert manifest["phases"]["2"]["train"]["dropped"]["no_rejected"] > 0
    text = {r["row_id"]: r for r in _read(out / "normalized" / "mine.arrow").to_pylist() if r["side"] == "train"}
    assert text[21]["prompt"] == " Human: question 21 Assistant:" and text[21]["chosen"] == " good 21"
    assert 1 not in text  # a copy of the eval file's row 1, which comes first
    assert 27 not in text and text[28]["rejected"] == " bad 28"  # chosen == rejected


def test_blending_concatenates_then_shuffles(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(SAMPLE, a)
    shutil.copytree(SAMPLE, b)
    alone = {}
    for name in ("a", "b"):
        prepare(_opts(tmp_path / f"out-{name}", [str(tmp_path / name)], dedup=False))
        alone[name] = _phase(tmp_path / f"out-{name}", 1, "train")
    out = tmp_path / "blend"
    prepare(_opts(out, [str(a), str(b)], dedup=False))  # b copies a: deduplicated, b would give no rows
    blended = _phase(out, 1, "train")
    concat = pa.concat_tables([alone["a"], alone["b"]])
    expected = concat.take(shuffle_index(1234, concat.num_rows))
    assert blended.column("source").to_pylist() == expected.column("source").to_pylist()
    assert blended.column("input_ids").to_pylist() == expected.column("input_ids").to_pylist()


def test_sft_only_split_builds_only_phase_1(tmp_path):
    manifest = prepare(_opts(tmp_path / "out", split="10,0,0")).manifest
    assert list(manifest["phases"]) == ["1"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".dataprep.lock", "dropped", "manifest.json", "normalized", "phase1"]


def test_an_empty_phase_is_an_error(tmp_path):
    src = tmp_path / "tiny.jsonl"
    src.write_text("".join(json.dumps({"chosen": f"\n\nHuman: q{i}\n\nAssistant: a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: b"}) + "\n" for i in range(12)))
    with pytest.raises(DataprepError, match="leaves phase 2 with no eval rows"):
        prepare(_opts(tmp_path / "out", [str(src)], split="8,1,1"))


def test_a_single_side_is_carved_9_1(tmp_path):
    src = tmp_path / "only-train.jsonl"
    shutil.copy(SAMPLE / "train.jsonl", src)
    manifest = prepare(_opts(tmp_path / "out", [str(src)])).manifest
    assert manifest["inputs"][0]["carve"] == {"from": "train", "split": "9,1", "train": 360, "eval": 40}
    assert manifest["inputs"][0]["split"] == {"train": [72, 144, 144], "eval": [8, 16, 16]}


def test_large_vocabularies_keep_32_bit_ids(tmp_path):
    """Ids above 65,535 must survive: vocabularies over 2**16 get int32 token columns."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for t in (SAMPLE / "train.jsonl").read_text().split() for w in [t]})
    vocab = {f"<filler{i}>": i for i in range(70_000)}
    vocab.update({w: 70_000 + i for i, w in enumerate(words)})
    vocab["[UNK]"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<|endoftext|>"])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    out = tmp_path / "out"
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(path), progress=False))
    table = _phase(out, 1, "train")
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    ids = table.column("input_ids").combine_chunks().values
    assert pa.compute.min(ids).as_py() >= 70_000 and pa.compute.max(ids).as_py() == len(vocab) - 1
