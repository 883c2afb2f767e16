"""Decontamination: training rows that share an n-word window with a benchmark or eval set.

`--decontaminate PATH...` takes files in any format the readers take (a directory: every such file in
it). A file's texts are its `text` column; else each message's content of its `messages` lists; else
every string column (an HH file's chosen and rejected, a benchmark's question and answer). Words are
ngrams.py's (letters and digits, ASCII lower-cased); a window never spans two texts, nor two fields
of a training row.

Finding the rows, in two steps:
  1. candidates: the index holds every m-word window of every benchmark text (m = n - s + 1, s =
     n // 3: 10 words for n = 13) as a 64-bit signature, sorted, with a bitmap over the signatures'
     top bits in front (16 bits per window: 1 in 16 absent windows goes on to the sorted search). A
     training text is looked up only at every s-th word: a shared n-word window starts at most s - 1
     words before a sampled word, so it contains the m-word window from there, and the lookup finds
     it. Sampling cuts the lookups s-fold; no shared window is missed.
  2. confirm: a candidate row's every m-word window is looked up, and each one found is compared word
     for word, n words long, with the benchmark text at the place the index records. A row is
     dropped only for a real shared n-word window, and those words are what dropped/ records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import memory, ngrams, readers
from dataprep.errors import DataprepError
from dataprep.inputs import Input

TEXT, MESSAGES = "text", "messages"
BATCH_TEXTS = 1024  # texts indexed at a time: bounds the temporaries of a window pass
BITMAP_BITS_PER_WINDOW = 16  # 6% of the windows looked up pass the bitmap wrongly and cost a sorted search
MAX_BITMAP_BITS = 30  # 128 MiB: past 64M windows the bitmap filters less, the search still decides


@dataclass(frozen=True)
class Benchmark:
    """The windows of every --decontaminate text, sorted by signature."""

    n: int  # words a shared window has
    m: int  # words of the indexed windows
    stride: int  # a candidate's windows are looked up every `stride` words
    files: list[dict]  # per file: path, sha256, texts, windows
    texts: pa.LargeStringArray  # every text, in file order
    sig: np.ndarray  # uint64, sorted
    text: np.ndarray  # int32 per signature: its text's index in `texts`
    word: np.ndarray  # int32: its first word's index in that text
    bitmap: np.ndarray  # uint8: bit t is set when some signature's top `bits` bits equal t
    bits: int

    def record(self) -> dict:
        return {"ngram": self.n, "files": self.files, "texts": len(self.texts), "windows": sum(f["windows"] for f in self.files)}

    def candidates(self, array: pa.Array) -> np.ndarray:
        """bool per string of `array`: some sampled window's signature is in the index (`confirm` decides)."""
        w = ngrams.windows(array, self.m, self.stride)
        found = np.zeros(len(array), bool)
        found[w.text[self._hits(w.sig)[0]]] = True
        return found

    def confirm(self, rows: list[tuple[str | None, ...]]) -> list[str | None]:
        """Per row (its fields' texts), the words of its first window that a benchmark text has, or None."""
        found: list[str | None] = [None] * len(rows)
        for field in range(len(rows[0]) if rows else 0):
            w = ngrams.windows(pa.array([r[field] or "" for r in rows], pa.string()), self.m)
            at, lo, hi = self._hits(w.sig)
            for row, word, first, last in zip(w.text[at].tolist(), w.word[at].tolist(), lo.tolist(), hi.tolist()):
                if found[row] is None:
                    window = ngrams.words(rows[row][field])[word : word + self.n]
                    if len(window) == self.n and any(self._words(j) == window for j in range(first, last)):
                        found[row] = b" ".join(window).decode()
        return found

    def _hits(self, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions in `sig` found in the index, and for each the range of equal signatures there)."""
        top = sig >> np.uint64(64 - self.bits)
        maybe = np.flatnonzero((self.bitmap[(top >> np.uint64(3)).astype(np.intp)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        lo = np.searchsorted(self.sig, sig[maybe], side="left")
        hi = np.searchsorted(self.sig, sig[maybe], side="right")
        hit = hi > lo
        return maybe[hit], lo[hit], hi[hit]

    def _words(self, j: int) -> list[bytes]:
        """The n words of the benchmark text from the window at sorted position j (fewer at its end)."""
        start = int(self.word[j])
        return ngrams.words(self.texts[int(self.text[j])].as_py())[start : start + self.n]


def load(inputs: list[Input], n: int) -> Benchmark:
    """Read and index every file of the --decontaminate datasets for shared windows of n words."""
    stride = max(1, n // 3)
    m = n - stride + 1
    texts, sigs, text_of, word_of, files, count = [], [], [], [], [], 0
    for input_ in inputs:
        for file, meta in zip(input_.dataset.files, input_.files):
            windows = 0
            file_texts = 0
            for array in (a.slice(s, BATCH_TEXTS) for a in _texts(file.path) for s in range(0, len(a), BATCH_TEXTS)):
                w = ngrams.windows(array, m)
                texts.append(array.cast(pa.large_string()))
                sigs.append(w.sig)
                text_of.append((w.text + count).astype(np.int32))
                word_of.append(w.word.astype(np.int32))
                count += len(array)
                file_texts += len(array)
                per_text = np.bincount(w.text, minlength=len(array))  # m-word windows; a text has n - m fewer of n words
                windows += int(np.clip(per_text - (n - m), 0, None).sum())
            if windows == 0:
                raise DataprepError(f"--decontaminate {file.path}: no text of {n} words or more; nothing to decontaminate against "
                                    "(check the file, or lower --decontam-ngram)")
            files.append({"path": meta["path"], "sha256": meta["sha256"], "texts": file_texts, "windows": windows})
    sig = np.concatenate(sigs)
    order = np.argsort(sig)  # which of equal signatures comes first does not matter
    sig = sig[order]
    bits = min(MAX_BITMAP_BITS, max(16, math.ceil(math.log2(len(sig) * BITMAP_BITS_PER_WINDOW))))
    top = sig >> np.uint64(64 - bits)
    bitmap = np.zeros(1 << (bits - 3), np.uint8)
    np.bitwise_or.at(bitmap, (top >> np.uint64(3)).astype(np.intp), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
    text, word = (np.concatenate(a)[order] for a in (text_of, word_of))
    memory.release()  # the passes' temporaries: glibc would keep them for the rest of the run
    return Benchmark(n, m, stride, files, pa.concat_arrays(texts), sig, text, word, bitmap, bits)


def _texts(path: Path):
    """The texts of one file, batch by batch, as string arrays (nulls are empty texts)."""
    column = None
    for table in readers.iter_tables(path, string_fields=(TEXT,)):
        if column is None:
            column = _text_columns(path, table.schema)
        for name in column:
            values = table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.string())
            if name == MESSAGES and name != TEXT and pa.types.is_list(values.type):
                values = pc.struct_field(pc.list_flatten(values), "content")
            yield pc.fill_null(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values, "")


def _text_columns(path: Path, schema: pa.Schema) -> list[str]:
    """`text`, else `messages` (a list of {role, content}), else every string column."""
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    if TEXT in strings:
        return [TEXT]
    if MESSAGES in schema.names:
        kind = schema.field(MESSAGES).type
        item = kind.value_type if pa.types.is_list(kind) else None
        if item is not None and pa.types.is_struct(item) and item.get_field_index("content") >= 0 and pa.types.is_string(item.field("content").type):
            return [MESSAGES]
    strings = [s for s in strings if s != readers.INVALID]
    if not strings:
        raise DataprepError(f"--decontaminate {path}: no text column (a '{TEXT}' column, a '{MESSAGES}' list of {{role, content}}, "
                            f"or any string column; found: {', '.join(n for n in schema.names if n != readers.INVALID) or 'none'})")
    return strings
