"""Byte fallback (Llama, Llama-2, Mistral): a character outside the vocabulary is spelled as byte
pieces, and every one of them belongs to that character: phase 1's loss mask marks all of them with it
and the prompt boundary keeps them together, for each tokenizer kind dataprep reads (a SentencePiece
.model, a tokenizer.json, a Hugging Face tokenizer directory). Checked against a character-level
reference that spells each token's bytes itself, never through the tokenizer's offsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep import PrepareOptions, prepare
from dataprep.format import read_shard
from dataprep.tokenizer import load_tokenizer
from tests.conftest import sample_texts
from tests.dataprep.test_loss_mask import assistant_chars

BYTES = [f"<0x{b:02X}>" for b in range(256)]
ANSWERS = [" 北京是中国的首都，历史悠久。龘", " Café, naïve, façade: déjà vu.", " Ünïcödé ✓ 🍞 mixed with plain words", " 日本語で？はい、どうぞ"]
# Llama's layout: a dummy "▁" before the text, every space a "▁", nothing else normalized.
SPACE = "▁"


def corpus() -> list[str]:
    """English only, so CJK and accented letters are outside the vocabulary."""
    return ["".join(c for c in text if c.isascii()).replace("\n", " ") for text in sample_texts()[:300]]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict[str, Path]:
    """The three kinds, each a tiny byte-fallback BPE in Llama's layout."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("byte-fallback")
    (root / "corpus.txt").write_text("\n".join(corpus()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "sp"), vocab_size=400, model_type="bpe",
                                   byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   character_coverage=1.0, minloglevel=2)

    rust = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    rust.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    rust.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    rust.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    spec = json.loads(rust.to_str())
    vocab = spec["model"]["vocab"]
    for piece in BYTES:  # the byte pieces a byte-fallback vocabulary holds
        vocab.setdefault(piece, len(vocab))
    rust = Tokenizer.from_str(json.dumps(spec))
    rust.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", rust.token_to_id("<s>"))])
    (root / "json").mkdir()
    rust.save(str(root / "json" / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=rust, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(str(root / "hf"))
    return {"sentencepiece": root / "sp.model", "tokenizers": root / "json" / "tokenizer.json", "transformers": root / "hf"}


def write_data(root: Path) -> None:
    """jsonfile rows with an earlier assistant turn in the prompt (answers after a space), and HH
    dialogues whose answer starts right after "Assistant:", on a character outside the vocabulary."""
    root.mkdir()
    pairs = [{"prompt": f"\n\nHuman: 你好 {i}\n\nAssistant: 你好！Ça va?\n\nHuman: 北京呢？\n\nAssistant:", "chosen": a.lstrip(),
              "rejected": "不知道。"} for i, a in enumerate(ANSWERS * 3)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pairs), encoding="utf-8")
    dialogues = [{"chosen": f"\n\nHuman: où {i}?\n\nAssistant:{a.lstrip()}", "rejected": f"\n\nHuman: où {i}?\n\nAssistant:龘"}
                 for i, a in enumerate(ANSWERS * 3)]
    (root / "dialogues.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dialogues), encoding="utf-8")


def token_chars(pieces: list[str], text: str) -> list[np.ndarray]:
    """The reference: the characters of `text` whose UTF-8 bytes each piece holds (a byte piece one
    byte, any other piece its own text), laid over Llama's normalized text: the dummy "▁" (no
    character of the text), then the text with "▁" for each space."""
    normalized = SPACE + text.replace(" ", SPACE)
    char_of_byte = np.repeat(np.arange(-1, len(text)), [len(c.encode()) for c in normalized])
    spelled = [bytes([int(p[3:5], 16)]) if p in BYTES else p.encode() for p in pieces]
    assert b"".join(spelled) == normalized.encode()
    ends = np.cumsum([len(b) for b in spelled])
    return [np.unique(c[c >= 0]) for c in np.split(char_of_byte, ends[:-1])]


def pieces_of(kind: str, path: Path, text: str) -> list[str]:
    """The tokenizer's own pieces for `text`, without special tokens."""
    if kind == "sentencepiece":
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=str(path)).encode(text, out_type=str)
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path if kind == "tokenizers" else path / "tokenizer.json")).encode(text, add_special_tokens=False).tokens


@pytest.mark.parametrize("kind", ["sentencepiece", "tokenizers", "transformers"])
def test_byte_pieces_are_marked_with_their_character(tmp_path, tokenizers, kind):
    write_data(tmp_path / "data")
    tok = load_tokenizer(str(tokenizers[kind]))
    assert tok.kind == kind
    out = tmp_path / "out"
    prepare(PrepareOptions(data=[str(tmp_path / "data")], out=out, tokenizer=str(tokenizers[kind]), split="1,0,0", max_seq_len=4096,
                           progress=False))
    normalized = pa.ipc.open_file(pa.memory_map(str(next((out / "normalized").glob("*.arrow"))))).read_all()
    texts = {(r["source"], r["row_id"]): r for r in normalized.to_pylist()}
    rows = pa.concat_tables(read_shard(p) for p in sorted((out / "phase1").glob("*.arrow"))).to_pylist()
    assert len(rows) == len(texts) == 2 * len(ANSWERS) * 3
    byte_pieces = 0
    for row in rows:
        text = texts[row["source"], row["row_id"]]
        prompt, answer = text["prompt"], text["chosen"]
        inside = assistant_chars(prompt, answer)
        pieces = pieces_of(kind, tokenizers[kind], prompt + answer)
        chars = token_chars(pieces, prompt + answer)
        head = len(row["input_ids"]) - 1 - len(pieces)  # BOS first, EOS last
        assert head == 1
        expected = [int(inside[c].any()) for c in chars]
        where = [(i, p, int(m)) for i, (p, m, e) in enumerate(zip(pieces, row["loss_mask"][head:-1], expected)) if m != e]
        assert not where, (kind, row["source"], row["row_id"], where[:6])
        assert row["loss_mask"][0] == 0 and row["loss_mask"][-1] == 1  # BOS never, EOS always
        # The prompt ends before the first token that holds a character of the answer.
        assert row["prompt_len"] == head + next(i for i, c in enumerate(chars) if (c >= len(prompt)).any())
        byte_pieces += sum(p in BYTES for p in pieces[row["prompt_len"] - head :])
    assert byte_pieces > 100  # the answers are mostly spelled in bytes


def test_sentencepiece_offsets_give_each_byte_piece_its_character(tokenizers):
    tok = load_tokenizer(str(tokenizers["sentencepiece"]))
    prompts, answers = ["问", "问"], ["答龘", " é"]
    ids, prompt_lens, offsets = tok.encode_with_offsets(prompts, answers)
    assert [np.asarray(o).tolist() for o in offsets] == [
        [[0, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 2], [1, 2], [1, 2], [2, 3], [2, 3], [2, 3]],  # BOS, the dummy "▁", 问, 答, 龘
        [[0, 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 2], [2, 3], [2, 3]],  # BOS, "▁", 问, "▁", é
    ]
    assert prompt_lens == [5, 5]  # 答's first byte starts the answer
    assert (ids, prompt_lens) == tok.encode_with_prefix(prompts, answers)
    assert tok.encode_with_offsets([], []) == ([], [], [])
