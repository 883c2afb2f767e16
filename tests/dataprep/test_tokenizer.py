"""The three tokenizer back-ends: ids equal the library's own, the prompt boundary equals the
shared-prefix definition, special ids are found, and the fingerprint follows the files."""

from __future__ import annotations

import json
import shutil

import pytest

from dataprep.errors import DataprepError
from dataprep.tokenizer import load_tokenizer
from tests.conftest import GPT2, SHARED_HH_FILES, sample_texts, shared_gpt2, shared_hh

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


# -- encode_joined: each prompt tokenized once, with the ids of the joined text ------------------------

_EDGES = ["", " ", "  ", "\n", "\t", ":", "'s", "a", "Z", "7", "é", "日本", "🍞", "<|endoftext|>", "\u00a0", "\u3000", "?!", "--"]


def _fuzz_pairs(seed: int, n: int) -> tuple[list[str], list[str], list[str]]:
    """Prompts and two responses built from edge-case pieces, so every kind of junction occurs."""
    import random

    rng = random.Random(seed)
    piece = lambda: "".join(rng.choice(_EDGES) for _ in range(rng.randint(0, 4)))
    prompts = [piece() + rng.choice(_EDGES) for _ in range(n)]
    return prompts, [rng.choice(_EDGES) + piece() for _ in range(n)], [rng.choice(_EDGES) + piece() for _ in range(n)]


def _check_joined(tok, prompts, chosen, rejected):
    joined = tok.encode_joined(prompts, [chosen, rejected])
    assert joined == [tok.encode_with_prefix(prompts, chosen), tok.encode_with_prefix(prompts, rejected)]


@pytest.mark.parametrize("fixture", ["bpe_json", "hf_dir"])
def test_encode_joined_equals_the_joined_text_on_every_junction(fixture, request):
    tok = load_tokenizer(str(request.getfixturevalue(fixture)))
    _check_joined(tok, *_fuzz_pairs(seed=1, n=3000))
    prompts, responses = zip(*PAIRS)
    _check_joined(tok, list(prompts), list(responses), list(reversed(responses)))


def test_encode_joined_takes_the_shortcut_only_for_gpt2_style_tokenizers(bpe_json, spm_model, tmp_path):
    from tokenizers import Tokenizer, normalizers

    from dataprep.tokenizer import _junction_safe

    assert _junction_safe(Tokenizer.from_file(str(bpe_json)))
    normalized = Tokenizer.from_file(str(bpe_json))
    normalized.normalizer = normalizers.Lowercase()
    assert not _junction_safe(normalized)
    normalized.save(str(tmp_path / "tokenizer.json"))
    _check_joined(load_tokenizer(str(tmp_path / "tokenizer.json")), *_fuzz_pairs(seed=2, n=500))  # the general path
    _check_joined(load_tokenizer(str(spm_model)), *_fuzz_pairs(seed=3, n=300))


@shared_gpt2
@shared_hh
def test_encode_joined_with_gpt2_on_every_shared_hh_row():
    import gzip

    from dataprep.sources.hh import split_dialogue

    rows = []
    for path in SHARED_HH_FILES:
        for line in gzip.open(path, "rt", encoding="utf-8"):
            row = json.loads(line)
            c, r = split_dialogue(row["chosen"]), split_dialogue(row["rejected"])
            if c and r and c[0] == r[0]:
                rows.append((c[0], c[1], r[1]))
    prompts, chosen, rejected = (list(x) for x in zip(*rows))
    _check_joined(load_tokenizer(str(GPT2)), prompts, chosen, rejected)
