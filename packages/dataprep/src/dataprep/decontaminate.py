"""Decontamination: training rows that share an n-word window with a benchmark or eval set.

`--decontaminate PATH...` takes files in any format the readers take (a directory: every such file in
it). A file's texts are its `text` column; else each message's content of its `messages` lists; else
every string in it, however deep in list and struct columns (an HH file's chosen and rejected, a
benchmark's question and answer, a ranking's `responses`, WebGPT's `question.full_text`,
UltraFeedback's `completions[].response`). Words are ngrams.py's (NFKC, casefolded, punctuation
separates, each CJK character a word); a window never spans two texts, nor two fields of a training row.

What is checked, for a benchmark text of k words:
  - k >= n: every n-word window; a training text that shares one is contaminated;
  - MIN_WORDS <= k < n (8 to 12 words at n = 13): the whole text; a training text that holds its k
    words in a row is contaminated (a short question copied verbatim is a leak all the same);
  - 0 < k < min(n, MIN_WORDS): nothing. Shorter runs recur by chance ("what is the capital of
    France"), which is why GPT-3's decontamination (Brown et al. 2020, appendix C) never went below 8
    words either. These texts are counted per file (`too_short`) and the summary warns about them.

Finding the rows, in two steps, with one index for the windows of the long texts and one for the
short texts checked whole:
  1. candidates: an index holds every m-word window of its texts (m = L - s + 1, s = L // 3, where L
     is the shortest shared run to find: n, or MIN_WORDS for whole texts; m = 10 for n = 13) as a
     64-bit signature, sorted, with a bitmap over the signatures' top bits in front (16 bits per
     window: 1 in 16 absent windows goes on to the sorted search). A training text is looked up only
     at every s-th word: a shared run of L words or more starts at most s - 1 words before a sampled
     word, so it contains the m-word window from there, and the lookup finds it. Sampling cuts the
     lookups s-fold; no shared run is missed.
  2. confirm: a candidate row's every m-word window is looked up, and each one found is compared word
     for word with the benchmark text at the place the index records: n words long, or the whole
     short text. A row is dropped only for a real match, and those words are what dropped/ records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import memory, ngrams, readers
from dataprep.errors import DataprepError
from dataprep.inputs import Input

# Bump when what counts as a word or a match changes: part of prepare's cache key, so an output screened
# under other rules is rebuilt (2: NFKC, casefold, punctuation and CJK words, short texts checked whole).
VERSION = 2

TEXT, MESSAGES = "text", "messages"
MIN_WORDS = 8  # the shortest text checked at all (see above)
BATCH_TEXTS = 1024  # texts indexed at a time: bounds the temporaries of a window pass
BITMAP_BITS_PER_WINDOW = 16  # 6% of the windows looked up pass the bitmap wrongly and cost a sorted search
MAX_BITMAP_BITS = 30  # 128 MiB: past 64M windows the bitmap filters less, the search still decides


@dataclass(frozen=True)
class _Index:
    """The m-word windows of some benchmark texts, sorted by signature; a training text is looked up
    every `stride` words."""

    whole: bool  # a match is the whole text (else n words)
    m: int
    stride: int
    sig: np.ndarray  # uint64, sorted
    text: np.ndarray  # int32 per signature: its text's index in Benchmark.texts
    word: np.ndarray  # int32: its first word's index in that text
    bitmap: np.ndarray  # uint8: bit t is set when some signature's top `bits` bits equal t
    bits: int

    @classmethod
    def build(cls, whole: bool, shortest: int, parts: list[ngrams.Windows]) -> _Index | None:
        """The index over `parts` (windows of `m` words, `text` already global), for shared runs of
        `shortest` words or more; None without any window."""
        if not any(len(p.sig) for p in parts):
            return None
        m, stride = _window(shortest)
        sig = np.concatenate([p.sig for p in parts])
        order = np.argsort(sig)  # which of equal signatures comes first does not matter
        sig = sig[order]
        bits = min(MAX_BITMAP_BITS, max(16, math.ceil(math.log2(len(sig) * BITMAP_BITS_PER_WINDOW))))
        top = sig >> np.uint64(64 - bits)
        bitmap = np.zeros(1 << (bits - 3), np.uint8)
        np.bitwise_or.at(bitmap, (top >> np.uint64(3)).astype(np.intp), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
        text, word = (np.concatenate([getattr(p, f) for p in parts])[order].astype(np.int32) for f in ("text", "word"))
        return cls(whole, m, stride, sig, text, word, bitmap, bits)

    def hits(self, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions in `sig` found in the index, and for each the range of equal signatures there)."""
        top = sig >> np.uint64(64 - self.bits)
        maybe = np.flatnonzero((self.bitmap[(top >> np.uint64(3)).astype(np.intp)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        lo = np.searchsorted(self.sig, sig[maybe], side="left")
        hi = np.searchsorted(self.sig, sig[maybe], side="right")
        hit = hi > lo
        return maybe[hit], lo[hit], hi[hit]


@dataclass(frozen=True)
class Benchmark:
    """Every --decontaminate text, and the indexes that find them in training text."""

    n: int  # words a shared window has
    shortest: int  # words a text needs to be checked at all: min(n, MIN_WORDS)
    files: list[dict]  # per file: path, sha256, texts, windows, whole, too_short
    texts: pa.LargeStringArray  # every text, in file order
    windows: _Index | None  # the texts of n words or more
    whole: _Index | None  # the texts of `shortest` to n - 1 words

    def record(self) -> dict:
        total = {k: sum(f[k] for f in self.files) for k in ("windows", "whole", "too_short")}
        return {"ngram": self.n, "min_words": self.shortest, "files": self.files, "texts": len(self.texts), **total}

    def candidates(self, array: pa.Array) -> np.ndarray:
        """bool per string of `array`: some sampled window's signature is in an index (`confirm` decides)."""
        words = ngrams.signatures(array)
        found = np.zeros(len(array), bool)
        for index in self._indexes:
            hit = index.hits(words.sampled(index.m, index.stride))[0]
            found[words.string_of(hit * index.stride)] = True  # the string each window found starts in
        return found

    def confirm(self, rows: list[tuple[str | None, ...]]) -> list[str | None]:
        """Per row (its fields' texts), the words it shares with a benchmark text (the first match), or None."""
        found: list[str | None] = [None] * len(rows)
        theirs: dict[int, list[bytes]] = {}  # benchmark text -> its words
        for field in range(len(rows[0]) if rows else 0):
            words = ngrams.signatures(pa.array([r[field] or "" for r in rows], pa.string()))
            mine: dict[int, list[bytes]] = {}  # row -> the field's words
            for index in self._indexes:
                w = words.windows(index.m)
                at, lo, hi = index.hits(w.sig)
                for row, word, first, last in zip(w.text[at].tolist(), w.word[at].tolist(), lo.tolist(), hi.tolist()):
                    for j in range(first, last):
                        if found[row] is not None:
                            break
                        t, start = int(index.text[j]), int(index.word[j])
                        if t not in theirs:
                            theirs[t] = ngrams.words(self.texts[t].as_py())
                        if row not in mine:
                            mine[row] = ngrams.words(rows[row][field])
                        found[row] = self._shared(index, mine[row], word, theirs[t], start)
        return found

    def _shared(self, index: _Index, mine: list[bytes], word: int, theirs: list[bytes], start: int) -> str | None:
        """The words shared where training word `word` lines up with benchmark word `start`, if they
        make a match: n words, or the whole benchmark text."""
        if index.whole:
            word, start, length = word - start, 0, len(theirs)
        else:
            length = self.n
        shared = theirs[start : start + length]
        if word >= 0 and len(shared) == length and mine[word : word + length] == shared:
            return b" ".join(shared).decode()
        return None

    @property
    def _indexes(self) -> list[_Index]:
        return [i for i in (self.windows, self.whole) if i is not None]


def load(inputs: list[Input], n: int) -> Benchmark:
    """Read and index every file of the --decontaminate datasets for shared windows of n words."""
    shortest = min(n, MIN_WORDS)
    texts: list[pa.Array] = []
    parts: dict[bool, list[ngrams.Windows]] = {False: [], True: []}  # whole -> windows, text numbered globally
    files: list[dict] = []
    count = 0
    for input_ in inputs:
        for file, meta in zip(input_.dataset.files, input_.files):
            tally = {"texts": 0, "windows": 0, "whole": 0, "too_short": 0}
            for array in _batches(file.path):
                words = ngrams.signatures(array)
                k = words.counts
                long, short = k >= n, (k >= shortest) & (k < n)
                for whole, keep, least in ((False, long, n), (True, short, shortest)):
                    if keep.any():
                        w = words.windows(_window(least)[0])
                        mask = keep[w.text]
                        parts[whole].append(ngrams.Windows(w.sig[mask], w.text[mask] + count, w.word[mask]))
                texts.append(array.cast(pa.large_string()))
                count += len(array)
                tally["texts"] += len(array)
                tally["windows"] += int((k[long] - n + 1).sum())
                tally["whole"] += int(short.sum())
                tally["too_short"] += int(((k > 0) & (k < shortest)).sum())
            if tally["windows"] + tally["whole"] == 0:
                checked = f" (nor of {shortest} to {n - 1} words, checked whole)" if shortest < n else ""
                raise DataprepError(f"--decontaminate {file.path}: no text of {n} words or more{checked}; nothing to decontaminate "
                                    "against (check the file, or lower --decontam-ngram)")
            files.append({"path": meta["path"], "sha256": meta["sha256"], **tally})
    windows, whole = _Index.build(False, n, parts[False]), _Index.build(True, shortest, parts[True])
    memory.release()  # the passes' temporaries: glibc would keep them for the rest of the run
    return Benchmark(n, shortest, files, pa.concat_arrays(texts), windows, whole)


def _window(shortest: int) -> tuple[int, int]:
    """(m, stride): looking up m-word windows every `stride` words finds every shared run of `shortest` words."""
    stride = max(1, shortest // 3)
    return shortest - stride + 1, stride


def _batches(path: Path) -> Iterator[pa.Array]:
    """The texts of one file, at most BATCH_TEXTS at a time."""
    for array in _texts(path):
        for start in range(0, len(array), BATCH_TEXTS):
            yield array.slice(start, BATCH_TEXTS)


def _texts(path: Path) -> Iterator[pa.Array]:
    """The texts of one file, batch by batch, as string arrays (nulls are empty texts)."""
    columns = None
    for table in readers.iter_tables(path, string_fields=(TEXT,)):
        if columns is None:
            columns = _text_columns(path, table.schema)
        for name in columns:
            values = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.string())
            values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
            if columns == [MESSAGES] and pa.types.is_list(values.type):
                values = pc.struct_field(pc.list_flatten(values), "content")
            for strings in _strings(values):
                yield pc.fill_null(strings, "")


def _strings(values: pa.Array) -> Iterator[pa.Array]:
    """Every string in `values`, however deep in lists and structs: one array per path to a string."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        yield from _strings(values.dictionary_decode())
    elif _is_text(kind):
        yield values if not pa.types.is_string_view(kind) else values.cast(pa.large_string())
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        yield from _strings(pc.list_flatten(values))
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            yield from _strings(pc.struct_field(values, [i]))
    elif pa.types.is_null(kind):  # a column that is null throughout this batch
        yield pa.nulls(len(values), pa.string())


def _holds_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _holds_text(kind.value_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _holds_text(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_holds_text(f.type) for f in kind)
    return _is_text(kind)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _text_columns(path: Path, schema: pa.Schema) -> list[str]:
    """`text`, else `messages` (a list of {role, content}), else every column that holds strings."""
    if TEXT in schema.names and _is_text(schema.field(TEXT).type):
        return [TEXT]
    if MESSAGES in schema.names:
        kind = schema.field(MESSAGES).type
        item = kind.value_type if pa.types.is_list(kind) else None
        if item is not None and pa.types.is_struct(item) and item.get_field_index("content") >= 0 and pa.types.is_string(item.field("content").type):
            return [MESSAGES]
    columns = [f.name for f in schema if f.name != readers.INVALID and _holds_text(f.type)]
    if not columns:
        raise DataprepError(f"--decontaminate {path}: no text column (a '{TEXT}' column, a '{MESSAGES}' list of {{role, content}}, "
                            f"or any column holding strings; found: {', '.join(n for n in schema.names if n != readers.INVALID) or 'none'})")
    return columns
