"""The cache key follows content, never names: one changed byte of an input, a different tokenizer
under the same file name, or a changed option each rebuild; nothing changed reuses."""

from __future__ import annotations

import json
import shutil

import pytest

from dataprep import sources
from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER


@pytest.fixture
def setup(tmp_path):
    data, tok_dir = tmp_path / "data", tmp_path / "tok"
    shutil.copytree(SAMPLE, data)
    tok_dir.mkdir()
    shutil.copy(SAMPLE_TOKENIZER, tok_dir / "tokenizer.json")
    out = tmp_path / "out"

    def run(**kw):
        return prepare(PrepareOptions(data=[str(data)], out=out, tokenizer=str(tok_dir / "tokenizer.json"), progress=False, **kw))

    assert not run().reused
    assert run().reused
    return data, tok_dir, run


def test_one_byte_of_input(setup):
    data, _, run = setup
    raw = bytearray((data / "test.jsonl").read_bytes())
    raw[raw.index(b"bread")] = ord("B")
    (data / "test.jsonl").write_bytes(bytes(raw))
    assert not run().reused
    assert run().reused


def test_same_tokenizer_name_other_vocabulary(setup):
    _, tok_dir, run = setup
    spec = json.loads((tok_dir / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-50]
    (tok_dir / "tokenizer.json").write_text(json.dumps(spec))
    result = run()
    assert not result.reused
    assert run().reused


@pytest.mark.parametrize("change", [{"split": "6,2,2"}, {"seed": 1}, {"max_seq_len": 128}, {"max_prompt_len": 64}, {"eos_token": "<|pad|>"},
                                    {"shard_bytes": 10_000}, {"dedup": False}])
def test_each_option(setup, change):
    _, _, run = setup
    assert not run(**change).reused
    assert run(**change).reused


def test_decontamination_files_and_window(setup, tmp_path):
    data, _, run = setup
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"text": "How do I bake a simple loaf of bread at home? Mix flour, warm water, yeast and salt"}) + "\n")
    assert not run(decontaminate=[str(bench)]).reused
    assert run(decontaminate=[str(bench)]).reused
    assert not run(decontaminate=[str(bench)], decontam_ngram=8).reused
    bench.write_text(bench.read_text().replace("bread", "buns"))  # same path, other words
    assert not run(decontaminate=[str(bench)], decontam_ngram=8).reused
    assert run(decontaminate=[str(bench)], decontam_ngram=8).reused
    assert not run().reused
    assert run(decontam_ngram=8).reused  # without files the window size changes nothing


def test_adapter_version(setup, monkeypatch):
    _, _, run = setup
    monkeypatch.setitem(sources.ADAPTER_VERSIONS, "hh", sources.ADAPTER_VERSIONS["hh"] + 1)
    assert not run().reused


def test_decontamination_rules_version(setup, monkeypatch):
    """An output screened under other rules of what a word or a match is (decontaminate.VERSION) is rebuilt."""
    from dataprep import decontaminate

    _, _, run = setup
    monkeypatch.setattr(decontaminate, "VERSION", decontaminate.VERSION + 1)
    assert not run().reused


def test_force_rebuilds(setup):
    _, _, run = setup
    assert not run(force=True).reused
