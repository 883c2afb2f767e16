"""Decontamination sees words as a reader does (NFKC, casefold, punctuation and symbols separate, each
CJK character a word), checks short benchmark texts whole and counts those too short to check, and
reads strings nested in lists and structs (docs/datasets.md, "Duplicates and contamination"). Each
end-to-end test plants a leak that the byte-level words of earlier versions let through."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep import decontaminate, ngrams, report
from dataprep.inputs import Input
from dataprep.sources import local
from tests.dataprep.test_screen import UNICODE, WORDS, _prepare, _random_texts, _read, _reference_contaminated, _row

# 16 words on the benchmark's side ("can't" is two): every 13-word window holds "can t" and "humans but".
LEAK = "Whales sing long songs that can't be heard by humans, but travel hundreds of miles"
OTHER = "A completely unrelated benchmark passage about the history of bread baking in medieval European towns"
CHINESE = "鲸鱼的歌声可以在寒冷黑暗的海水中传播数百英里，人类却听不见。"
JAPANESE = "東京タワーは一九五八年に完成した電波塔です。"
QUESTION = "Which planet in our solar system has the most known moons?"  # 11 words: checked whole
SEVEN = "What is the capital city of France?"  # 7 words: too short to check


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def _run(tmp_path: Path, leaks: dict[int, str], *bench_rows: dict) -> tuple[dict, dict[int, str]]:
    """prepare on 60 rows with `leaks` (row -> text appended to its chosen reply) against a benchmark
    file of `bench_rows`: the manifest, and the contaminated rows with their shared words."""
    rows = [_row(i) for i in range(60)]
    for i, text in leaks.items():
        rows[i]["chosen"] += " " + text
    data = tmp_path / "mine"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bench_rows), encoding="utf-8")
    manifest = _prepare(tmp_path / "out", [data], decontaminate=[str(bench)])
    dropped = _read(tmp_path / "out" / "dropped" / "mine.arrow")
    return manifest, {r["row_id"]: r["detail"] for r in dropped if r["reason"] == "contaminated"}


def _words(text: str, count: int | None = None) -> str:
    return b" ".join(ngrams.words(text)[:count]).decode()


# -- words -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [
    ("don't stop", "don’t stop"),  # curly apostrophe
    ("a b", "a\u00a0b"),  # no-break space
    ("well known", "well—known"),  # em dash
    ('say "hi"', "say “hi”"),  # curly quotes
    ("full file", "ＦＵＬＬ ﬁle"),  # fullwidth letters, a ligature: NFKC
    ("strasse", "Straße"),  # casefold, not only lower-case
    ("café", "cafe\u0301"),  # a decomposed accent: NFKC composes it
    ("example", "exam\u00adple"),  # a soft hyphen is invisible
    ("i you", "I ❤️ you"),  # a symbol separates; its variation selector vanishes
])
def test_variants_have_the_same_words_and_signatures(a, b):
    assert ngrams.words(a) == ngrams.words(b)
    w = ngrams.windows(pa.array([a, b], pa.string()), len(ngrams.words(a)))
    assert w.sig[0] == w.sig[1]


def test_each_cjk_character_is_a_word():
    assert ngrams.words("東京タワー") == [c.encode() for c in "東京タワー"]
    assert ngrams.words("中文，English 한국어") == [c.encode() for c in "中文"] + [b"english", "한국어".encode()]  # Hangul keeps its spaces


def test_sampled_windows_are_those_of_windows():
    texts = _random_texts(random.Random(7), 300)
    words = ngrams.signatures(pa.array(texts, pa.string()))
    for n, stride in ((1, 1), (3, 2), (10, 4)):
        w = words.windows(n)
        start = words.first[w.text] + w.word
        sampled = words.sampled(n, stride)
        on = start % stride == 0
        assert (sampled[start[on] // stride] == w.sig[on]).all()
        assert (words.string_of(start) == w.text).all()


# -- the cases, end to end --------------------------------------------------------------------


def test_a_leak_written_with_other_punctuation_or_spaces_is_found(tmp_path):
    leaks = {10: LEAK.replace("'", "’"), 11: LEAK.replace(" ", "\u00a0"), 12: LEAK.replace(", ", "—"), 13: _fullwidth(LEAK)}
    _, dropped = _run(tmp_path, leaks, {"text": LEAK}, {"text": OTHER})
    assert dropped == {row: _words(LEAK, 13) for row in leaks}


def test_a_verbatim_chinese_or_japanese_passage_is_found(tmp_path):
    leaks = {20: f"答案是：{CHINESE}谢谢", 21: f"はい。{JAPANESE}"}
    _, dropped = _run(tmp_path, leaks, {"text": CHINESE}, {"text": JAPANESE}, {"text": OTHER})
    assert dropped == {20: " ".join(CHINESE[:13]), 21: " ".join(JAPANESE[:13])}


def test_a_short_question_is_checked_whole_and_shorter_texts_are_counted(tmp_path):
    leaks = {30: QUESTION, 31: SEVEN, 32: QUESTION.rsplit(" ", 1)[0]}  # 32 holds 10 of its 11 words
    bench = ({"question": QUESTION, "answer": "Saturn"}, {"question": SEVEN, "answer": "Paris"}, {"question": OTHER, "answer": ""})
    manifest, dropped = _run(tmp_path, leaks, *bench)
    assert dropped == {30: _words(QUESTION)}
    record = manifest["decontaminate"]
    (file,) = record["files"]
    assert (file["texts"], file["windows"], file["whole"], file["too_short"]) == (6, 3, 1, 3)  # the empty answer is no text
    assert (record["min_words"], record["whole"], record["too_short"]) == (8, 1, 3)
    assert "warning: 3 texts of fewer than 8 words are not checked (3 in bench.jsonl)" in report.decontaminate_line(record)


def test_strings_nested_in_lists_and_structs_are_read(tmp_path):
    passages = [f"{OTHER} number {k} of the nested columns" for k in ("one", "two", "three")]
    row = {"title": LEAK, "question": {"full_text": passages[0], "dataset": "eli5"}, "responses": [passages[1], "ok"],
           "completions": [{"response": passages[2], "model": "m", "score": 3}]}
    manifest, dropped = _run(tmp_path, {40: passages[0], 41: passages[1], 42: passages[2]}, row)
    assert dropped == {40 + k: _words(p, 13) for k, p in enumerate(passages)}
    assert manifest["decontaminate"]["texts"] == 7 and manifest["decontaminate"]["too_short"] == 3  # eli5, ok, m


# -- against a brute-force reference -------------------------------------------------------------------


@pytest.mark.parametrize("n", [13, 5, 2, 1])
def test_decontamination_matches_a_brute_force_reference(tmp_path, n):
    rng = random.Random(n)
    vocabulary = WORDS + UNICODE + [f"w{k}" for k in range(300)]
    say = lambda k: " ".join(rng.choice(vocabulary) for _ in range(k))
    bench_texts = [say(rng.choice([3, 6, 9, 12, 20, 40])) for _ in range(60)]
    variant = lambda t: t.replace(" ", rng.choice([" ", "\u00a0", "—", ", "]))
    rows = []
    for _ in range(150):
        row = [say(rng.randrange(0, 30)) for _ in range(3)]
        if rng.random() < 0.5:  # plant a piece of a benchmark text, written another way
            words = rng.choice(bench_texts).split()
            start = rng.randrange(len(words))
            row[rng.randrange(3)] += " " + variant(" ".join(words[start : start + rng.randrange(1, 16)])) + " " + say(2)
        rows.append(tuple(row))
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in bench_texts), encoding="utf-8")
    bench = decontaminate.load([Input(local.resolve(path), "decontaminate", [{"path": str(path), "sha256": ""}])], n)
    flagged = np.zeros(len(rows), bool)
    for field in range(3):
        flagged |= bench.candidates(pa.array([r[field] for r in rows], pa.string()))
    candidates = np.flatnonzero(flagged).tolist()
    confirmed = {row for row, shared in zip(candidates, bench.confirm([rows[i] for i in candidates])) if shared is not None}
    expected = _reference_contaminated(rows, bench_texts, n)
    assert set(candidates) >= expected  # the sampled lookups miss nothing
    assert confirmed == expected
    assert 0 < len(expected) < len(rows) or n == 1
