"""The three tokenizer back-ends: ids equal the library's own, the prompt boundary equals the
shared-prefix definition, special ids are found, and the fingerprint follows the files."""

from __future__ import annotations

import json
import shutil

import pytest

from dataprep.errors import DataprepError
from dataprep.tokenizer import load_tokenizer
from tests.conftest import GPT2, sample_texts, shared_gpt2

PAIRS = [
    ("\n\nHuman: How do I bake bread?\n\nAssistant:", " Mix flour and water."),
    ("\n\nHuman: 日本語で？\n\nAssistant:", " はい、どうぞ 🍞"),
    ("\n\nHuman: spaces\n\nAssistant:", "  two leading spaces"),
    ("\n\nHuman: newline\n\nAssistant:", "\n\nstarts with a newline"),
    (" Human: jsonfile form Assistant:", " answer"),
]


def _shared_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _check_boundaries(tok):
    prompts, responses = zip(*PAIRS)
    whole, prefix_lens = tok.encode_with_prefix(list(prompts), list(responses))
    assert whole == tok.encode([p + r for p, r in PAIRS])
    for ids, n, prompt_ids in zip(whole, prefix_lens, tok.encode(list(prompts))):
        assert 0 < n < len(ids)
        assert n == _shared_prefix(ids, prompt_ids)


def test_tokenizer_json(bpe_json):
    from tokenizers import Tokenizer

    tok = load_tokenizer(str(bpe_json))
    rust = Tokenizer.from_file(str(bpe_json))
    texts = sample_texts()[:50]
    assert tok.encode(texts) == [e.ids for e in rust.encode_batch(texts)]
    assert tok.kind == "tokenizers"
    assert tok.eos_id == rust.token_to_id("<|endoftext|>")
    assert tok.decode(tok.encode(["round trip"])[0]) == "round trip"
    _check_boundaries(tok)


def test_hf_directory_with_bos(hf_dir):
    from transformers import AutoTokenizer

    tok = load_tokenizer(str(hf_dir))
    hf = AutoTokenizer.from_pretrained(str(hf_dir))
    texts = sample_texts()[:50]
    assert tok.encode(texts) == hf(texts)["input_ids"]
    assert tok.kind == "transformers"
    assert (tok.eos_id, tok.bos_id, tok.pad_id) == (hf.eos_token_id, hf.bos_token_id, hf.pad_token_id)
    assert tok.encode(["x"])[0][0] == hf.bos_token_id
    _check_boundaries(tok)


def test_sentencepiece(spm_model):
    import sentencepiece as spm

    tok = load_tokenizer(str(spm_model))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    texts = sample_texts()[:50]
    assert tok.encode(texts) == [[sp.bos_id()] + ids for ids in sp.encode(texts)]
    assert (tok.kind, tok.eos_id, tok.bos_id, tok.pad_id) == ("sentencepiece", sp.eos_id(), sp.bos_id(), 3)
    _check_boundaries(tok)


@shared_gpt2
def test_real_gpt2():
    tok = load_tokenizer(str(GPT2))
    assert tok.encode(["Hello world"]) == [[15496, 995]]
    assert (tok.eos_id, tok.bos_id, tok.pad_id, tok.vocab_size) == (50256, None, None, 50257)
    _check_boundaries(tok)


def test_fingerprint_follows_content_not_name(bpe_json, tmp_path):
    original = load_tokenizer(str(bpe_json)).fingerprint
    copy = tmp_path / "tokenizer.json"
    shutil.copy(bpe_json, copy)
    assert load_tokenizer(str(copy)).fingerprint == original
    spec = json.loads(copy.read_text())
    spec["model"]["merges"].pop()  # same file name, one merge fewer
    copy.write_text(json.dumps(spec))
    assert load_tokenizer(str(copy)).fingerprint != original
    assert load_tokenizer(str(bpe_json), eos_token="<|endoftext|>").fingerprint == original


def test_errors(tmp_path, bpe_json):
    with pytest.raises(DataprepError, match="not found"):
        load_tokenizer(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataprepError, match="not a valid tokenizer.json"):
        load_tokenizer(str(bad))
    with pytest.raises(DataprepError, match="not in its vocabulary"):
        load_tokenizer(str(bpe_json), eos_token="<never>")
    with pytest.raises(DataprepError, match="Hugging Face Hub"):
        load_tokenizer("no-such-org/no-such-tokenizer")


def test_fingerprint_ignores_cosmetic_config(hf_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(hf_dir, copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["model_max_length"] = 123
    config["name_or_path"] = "someone/else"
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_tokenizer(str(copy)).fingerprint == load_tokenizer(str(hf_dir)).fingerprint
    spec = json.loads((copy / "tokenizer.json").read_text())
    spec["model"]["merges"].pop()
    (copy / "tokenizer.json").write_text(json.dumps(spec))
    assert load_tokenizer(str(copy)).fingerprint != load_tokenizer(str(hf_dir)).fingerprint
