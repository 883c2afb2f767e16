"""The screen stage: exact duplicates and contaminated rows are dropped after parsing, keep
DeepSpeed-Chat's split for every other row, are counted per phase and side and land in dropped/ with
their detail; the vectorised words, windows and keys agree with slow Python references."""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep import PrepareOptions, dedup, ngrams, prepare
from tests.conftest import GPT2, SAMPLE_TOKENIZER, SHARED_HH_FILES, shared_gpt2, shared_hh

WORDS = "the a cat sat on mat dog ran far and then it rained all day long Über café 東京 x1 2b".split()
PASSAGE = "Whales sing long songs that travel hundreds of miles through the cold dark ocean water at night"


# -- words, windows and keys against Python references --------------------------------------------


def _reference_words(text: str) -> list[bytes]:
    """Words re-derived from their definition, on the whole str and character by character: NFKC,
    casefold; punctuation, symbols, spaces, controls and the zero-width space separate, other format
    characters and variation selectors vanish, each kana or Han character stands alone."""
    spaced = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        if ch.isascii():
            spaced.append(ch if ch.isalnum() else " ")
            continue
        kind = unicodedata.category(ch)
        if kind[0] in "PSZ" or kind == "Cc" or ch == "\u200b":
            spaced.append(" ")
        elif kind != "Cf" and not (0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF):  # variation selectors
            cjk = unicodedata.name(ch, "").startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA"))
            spaced.append(f" {ch} " if cjk else ch)
    return [w.encode() for w in "".join(spaced).split()]


# Separators that are cut at in the byte pass (curly quotes, dashes, spaces, emoji) and those that are
# not (their NFKC form holds a mark: `‾`, `¨`), format characters, fullwidth forms, ligatures, a
# decomposed accent, casefolding beyond lower-casing, kana and Han (with a voicing mark to compose,
# halfwidth, with an ideographic variation selector).
UNICODE = ["’", "“", "”", "—", "–", "…", "•", "\u00a0", "\u2009", "\u3000", "\u200b", "❤\ufe0f", "👍🏽", "‾", "¨", "\u00ad",
           "\u200d", "Ｆｕｌｌ", "！", "ﬁ", "e\u0301", "Straße", "STRASSE", "ΣΊΣΥΦΟΣ", "東京", "タワー", "ひらがな", "中文，", "か\u3099",
           "ｶﾞ", "漢\U000e0100", "한국어", "हिन्दी", "½"]


def _random_texts(rng: random.Random, n: int) -> list[str | None]:
    pieces = WORDS + UNICODE + [" ", "  ", "\n\n", "\t", ",", "-", "!", "\u00a0", "\x10", "\x1c", "_", "é", "🙂"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40))) for _ in range(n)]
    return texts + [None, "", "word", "glued", "Glued"]  # adjacent strings whose bytes form one run


def test_words_agree_with_a_reference_on_str():
    rng = random.Random(0)
    for text in _random_texts(rng, 300):
        assert ngrams.words(text or "") == _reference_words(text or "")


@pytest.mark.parametrize("n, stride", [(1, 1), (2, 1), (5, 1), (5, 2), (13, 4)])
def test_windows_are_every_n_word_run_of_each_string(n, stride):
    rng = random.Random(n)
    texts = _random_texts(rng, 400)
    w = ngrams.windows(pa.array(texts, pa.string()), n, stride)
    expected, flat = [], 0
    for t, text in enumerate(texts):
        words = ngrams.words(text or "")
        expected += [(t, i) for i in range(len(words) - n + 1) if (flat + i) % stride == 0]
        flat += len(words)
    assert list(zip(w.text.tolist(), w.word.tolist())) == expected
    by_words: dict[tuple, set[int]] = {}
    for sig, t, i in zip(w.sig.tolist(), w.text.tolist(), w.word.tolist()):
        by_words.setdefault(tuple(ngrams.words(texts[t] or "")[i : i + n]), set()).add(sig)
    assert all(len(sigs) == 1 for sigs in by_words.values()), "equal windows must have equal signatures"
    assert len({next(iter(s)) for s in by_words.values()}) == len(by_words), "different windows collided"


def test_windows_of_a_sliced_array():
    texts = pa.array(["zero one two", "three four five six", "seven eight"], pa.string())
    w = ngrams.windows(texts.slice(1), 2)
    assert list(zip(w.text.tolist(), w.word.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_dedup_keys_follow_whitespace_normalisation():
    variants = ["a b", "a  b", " a b ", "a\nb", "a\t\r\nb", "a\u00a0b", "a\u2003 b", "A b", "a, b", "ab"]
    rows = pa.table({"prompt": variants, "chosen": ["x"] * len(variants), "rejected": ["y"] * len(variants)})
    keys = dedup.content_keys(rows)
    reference = [re.sub(r"\s+", " ", v).strip() for v in variants]
    for i in range(len(variants)):
        for j in range(len(variants)):
            assert (keys[i] == keys[j]).all() == (reference[i] == reference[j]), (variants[i], variants[j])


def test_a_null_rejected_is_not_an_empty_one():
    rows = pa.table({"prompt": ["p", "p"], "chosen": ["c", "c"], "rejected": [None, ""]})
    keys = dedup.content_keys(rows)
    assert not (keys[0] == keys[1]).all()


def test_first_copies_keep_the_first_in_order():
    keys = np.array([[1, 1], [2, 2], [1, 1], [1, 2], [2, 2], [1, 1]], np.uint64)
    assert dedup.first_copies(keys).tolist() == [0, 1, 0, 3, 1, 0]


# -- prepare end to end ---------------------------------------------------------------------------


def _row(i: int) -> dict:
    rng = random.Random(i)
    say = lambda k: " ".join(rng.choice(WORDS[:17]) for _ in range(k))
    return {"prompt": f"Human: question {i} {say(6)} Assistant:", "chosen": f"answer {i} {say(12)}", "rejected": f"other {i} {say(8)}"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """200 train rows and 40 eval rows (jsonfile layout) with planted copies and a planted leak."""
    root = tmp_path_factory.mktemp("planted")
    train = [_row(i) for i in range(200)]
    evals = [_row(1000 + i) for i in range(40)]
    train[10]["rejected"] += " " + PASSAGE.upper().replace(" ", ", ")  # contaminated, and 50 and 120 copy it
    train[50] = {k: v.replace(" ", "  ").replace("Assistant:", "\nAssistant:") for k, v in train[10].items()}  # whitespace only
    train[120] = dict(train[10])
    train[130] = {**train[60], "chosen": train[60]["chosen"].upper()}  # case differs: not a copy
    evals[3] = dict(train[5])  # the eval file is read first: train row 5 is the copy
    train[77]["chosen"] += " " + PASSAGE  # 17 words of the benchmark
    train[88]["prompt"] = train[88]["prompt"].replace("Assistant:", " ".join(PASSAGE.split()[:12]) + " Assistant:")  # 12 only
    data = root / "mine"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    bench = root / "bench"
    bench.mkdir()
    text = f"Question: which animal? {PASSAGE.lower()}. The end."
    (bench / "text.jsonl").write_text(json.dumps({"text": text, "id": 1}) + "\n" + json.dumps({"text": "unrelated words here", "id": 2}) + "\n")
    messages = [{"role": "user", "content": "which animal?"}, {"role": "assistant", "content": PASSAGE}]
    (bench / "messages.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
    (bench / "columns.csv").write_text(f"question,answer\nwhich animal?,{PASSAGE}\n")
    return root


def _prepare(out: Path, data: list[Path], **kw) -> dict:
    opts = PrepareOptions(data=[str(d) for d in data], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="4,3,3", progress=False, **kw)
    return prepare(opts).manifest


def _read(path: Path) -> list[dict]:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all().to_pylist()


def _phase_rows(out: Path, phase: int, side: str) -> list[tuple[str, int]]:
    rows = []
    for shard in sorted((out / f"phase{phase}").glob(f"{side}-*.arrow")):
        rows += [(r["source"], r["row_id"]) for r in _read(shard)]
    return rows


def _assert_counts_add_up(manifest: dict) -> None:
    for sides in manifest["phases"].values():
        for info in sides.values():
            assert info["kept"] + sum(info["dropped"].values()) == info["rows_in"] + info["repeated"]


def test_duplicates_are_dropped_keeping_the_first(planted, tmp_path):
    manifest = _prepare(tmp_path / "out", [planted / "mine"])
    (dataset,) = manifest["inputs"]
    assert dataset["screened"] == {"duplicate": 3}
    drops = {(r["source"], r["row_id"]): r for r in _read(tmp_path / "out" / "dropped" / "mine.arrow") if r["reason"] == "duplicate"}
    assert {k: r["detail"] for k, r in drops.items()} == {
        ("mine/train", 5): "copy of mine/test row 3",
        ("mine/train", 50): "copy of mine/train row 10",
        ("mine/train", 120): "copy of mine/train row 10",
    }
    counted = sum(info["dropped"].get("duplicate", 0) for sides in manifest["phases"].values() for info in sides.values())
    assert counted == 3
    normalized = {(r["source"], r["row_id"]) for r in _read(tmp_path / "out" / "normalized" / "mine.arrow")}
    assert not normalized & drops.keys() and ("mine/train", 130) in normalized and ("mine/train", 10) in normalized
    _assert_counts_add_up(manifest)


def test_no_dedup_keeps_them_and_the_split_is_unchanged(planted, tmp_path):
    kept = _prepare(tmp_path / "all", [planted / "mine"], dedup=False)
    screened = _prepare(tmp_path / "dedup", [planted / "mine"], decontaminate=[str(planted / "bench" / "text.jsonl")])
    assert kept["inputs"][0]["screened"] == {}
    assert not any("duplicate" in info["dropped"] for sides in kept["phases"].values() for info in sides.values())
    gone = {(r["source"], r["row_id"]) for r in _read(tmp_path / "dedup" / "dropped" / "mine.arrow")}
    for phase in (1, 2, 3):
        for side in ("train", "eval"):
            # Every remaining row keeps DeepSpeed-Chat's side, phase and order: the screened run's rows are
            # the unscreened run's, less the rows it dropped.
            assert _phase_rows(tmp_path / "dedup", phase, side) == [r for r in _phase_rows(tmp_path / "all", phase, side) if r not in gone]
            assert screened["phases"][str(phase)][side]["rows_in"] == kept["phases"][str(phase)][side]["rows_in"]
    _assert_counts_add_up(screened)


@pytest.mark.parametrize("bench", ["text.jsonl", "messages.jsonl", "columns.csv"])
def test_contaminated_rows_are_dropped_with_the_shared_words(planted, tmp_path, bench):
    out = tmp_path / "out"
    manifest = _prepare(out, [planted / "mine"], decontaminate=[str(planted / "bench" / bench)])
    assert manifest["inputs"][0]["screened"] == {"contaminated": 2, "duplicate": 3}
    drops = {r["row_id"]: r for r in _read(out / "dropped" / "mine.arrow") if r["source"] == "mine/train"}
    assert drops[77]["reason"] == drops[10]["reason"] == "contaminated"
    assert drops[77]["detail"] == " ".join(PASSAGE.lower().split()[:13])
    assert drops[10]["detail"] == " ".join(PASSAGE.lower().split()[:13])
    assert drops[50]["reason"] == drops[120]["reason"] == "duplicate"  # copies of a contaminated row stay duplicates
    assert 88 not in drops  # 12 shared words are not 13
    where = {(r["phase"], r["side"]) for r in drops.values() if r["reason"] == "contaminated"}
    counted = {(int(p), s): i["dropped"].get("contaminated", 0) for p, sides in manifest["phases"].items() for s, i in sides.items()}
    assert {k for k, v in counted.items() if v} == where and sum(counted.values()) == 2
    assert manifest["decontaminate"]["ngram"] == 13 and manifest["decontaminate"]["files"][0]["path"].endswith(bench)
    _assert_counts_add_up(manifest)


def test_a_shorter_window_finds_more(planted, tmp_path):
    manifest = _prepare(tmp_path / "out", [planted / "mine"], decontaminate=[str(planted / "bench")], decontam_ngram=12)
    drops = {r["row_id"]: r for r in _read(tmp_path / "out" / "dropped" / "mine.arrow") if r["reason"] == "contaminated"}
    assert sorted(drops) == [10, 77, 88]
    assert drops[88]["detail"] == " ".join(PASSAGE.lower().split()[:12])
    assert [f["path"].rsplit("/", 1)[1] for f in manifest["decontaminate"]["files"]] == ["columns.csv", "messages.jsonl", "text.jsonl"]


def test_a_copy_in_a_later_dataset_is_dropped_there(planted, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    rows = [_row(5000 + i) for i in range(60)]
    rows[7] = _row(33)  # train row 33 of the first dataset
    (other / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = _prepare(tmp_path / "out", [planted / "mine", other])
    assert [d["screened"] for d in manifest["inputs"]] == [{"duplicate": 3}, {"duplicate": 1}]
    (drop,) = [r for r in _read(tmp_path / "out" / "dropped" / "other.arrow") if r["reason"] == "duplicate"]
    assert (drop["row_id"], drop["detail"]) == (7, "copy of mine/train row 33")
    _assert_counts_add_up(manifest)


# -- real data --------------------------------------------------------------------------------------


def _reference_contaminated(rows: list[tuple[str | None, ...]], bench_texts: list[str], n: int) -> set[int]:
    """Rows (their fields' texts) that share an n-word window with a benchmark text, or hold all the
    words of one of 8 to n - 1 words in a row (docs/datasets.md): Python sets of word tuples."""
    grams, wholes = set(), set()
    for text in bench_texts:
        words = tuple(_reference_words(text))
        if len(words) >= n:
            grams.update(words[i : i + n] for i in range(len(words) - n + 1))
        elif len(words) >= min(n, 8):
            wholes.add(words)
    wanted, lengths = grams | wholes, {n, *map(len, wholes)}
    found = set()
    for i, row in enumerate(rows):
        for text in row:
            words = tuple(_reference_words(text or ""))
            if any(words[j : j + k] in wanted for k in lengths for j in range(len(words) - k + 1)):
                found.add(i)
                break
    return found


@shared_hh
@shared_gpt2
@pytest.mark.parametrize("n", [13, 8])
def test_hh_decontamination_matches_a_slow_reference(tmp_path, n):
    """helpful-rejection-sampled's test split decontaminated against helpful-online's (both HH files,
    chosen and rejected as the benchmark's string columns), against Python sets of word tuples."""
    train, bench = SHARED_HH_FILES[1], SHARED_HH_FILES[0]
    out = tmp_path / "out"
    manifest = prepare(PrepareOptions(data=[str(train)], out=out, tokenizer=str(GPT2), split="6,2,2", progress=False,
                                      decontaminate=[str(bench)], decontam_ngram=n)).manifest
    rows = [r for r in _read(out / "normalized" / "test.arrow")]
    dropped = _read(out / "dropped" / "test.arrow")
    screened = [r for r in dropped if r["reason"] in ("contaminated", "duplicate")]
    texts = [v for line in gzip.open(bench, "rt", encoding="utf-8") for v in json.loads(line).values()]
    universe = rows + screened
    fields = [(r["prompt"], r["chosen"], r["rejected"]) for r in universe]
    expected = {(universe[i]["source"], universe[i]["row_id"]) for i in _reference_contaminated(fields, texts, n)}
    assert {(r["source"], r["row_id"]) for r in dropped if r["reason"] == "contaminated"} == expected
    assert manifest["inputs"][0]["screened"] == ({"contaminated": len(expected)} if expected else {})
    assert (len(expected) > 20) == (n == 8)  # the shorter window finds many more: the comparison has teeth
