"""Decontamination: training rows that share an n-word window with a benchmark or eval set.

`--decontaminate PATH...` takes files in any format the readers take (a directory: every such file in
it). A file's texts are its `text` column; else each message's content of its `messages` lists; else
every string column (an HH file's chosen and rejected, a benchmark's question and answer). Words are
ngrams.py's (letters and digits, ASCII lower-cased); a window never spans two texts, nor two fields
of a training row.

The index holds every window of every text as a 64-bit signature, sorted, with a bitmap over the
signatures' top bits in front (about 64 bits per window, so 1 in 64 windows that are not in the index
go on to the sorted search). A training window whose signature is found is confirmed word for word
against the benchmark text it points to, so a row is dropped only for a real shared window, and the
window's words are what dropped/ records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import ngrams, readers
from dataprep.errors import DataprepError
from dataprep.inputs import Input

TEXT, MESSAGES = "text", "messages"
MAX_BITMAP_BITS = 30  # 128 MiB: past about 16M windows the bitmap filters less, the search still decides


@dataclass(frozen=True)
class Benchmark:
    """The windows of every --decontaminate text, sorted by signature."""

    n: int
    files: list[dict]  # per file: path, sha256, texts, windows
    texts: pa.LargeStringArray  # every text, in file order
    sig: np.ndarray  # uint64, sorted
    text: np.ndarray  # per signature: its text's index in `texts`
    word: np.ndarray  # its first word's index in that text
    bitmap: np.ndarray  # uint8: bit t is set when some signature's top `bits` bits equal t
    bits: int

    def record(self) -> dict:
        return {"ngram": self.n, "files": self.files, "texts": len(self.texts), "windows": len(self.sig)}

    def find(self, array: pa.Array) -> dict[int, str]:
        """The strings of `array` that share a window with the benchmark -> that window's words (their
        first such window)."""
        found: dict[int, str] = {}
        w = ngrams.windows(array, self.n)
        top = w.sig >> np.uint64(64 - self.bits)
        maybe = np.flatnonzero((self.bitmap[(top >> np.uint64(3)).astype(np.intp)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        lo = np.searchsorted(self.sig, w.sig[maybe], side="left")
        hi = np.searchsorted(self.sig, w.sig[maybe], side="right")
        hit = hi > lo
        at, lo, hi = maybe[hit], lo[hit], hi[hit]
        mine: dict[int, list[bytes]] = {}
        for i, text, word in zip(range(len(at)), w.text[at].tolist(), w.word[at].tolist()):
            if text in found:
                continue
            words = mine.get(text) or mine.setdefault(text, ngrams.words(array[text].as_py() or ""))
            window = words[word : word + self.n]
            if any(self._words(j) == window for j in range(lo[i], hi[i])):
                found[text] = b" ".join(window).decode()
        return found

    def _words(self, j: int) -> list[bytes]:
        """The words of the benchmark window at sorted position j."""
        start = int(self.word[j])
        return ngrams.words(self.texts[int(self.text[j])].as_py())[start : start + self.n]


def load(inputs: list[Input], n: int) -> Benchmark:
    """Read and index every file of the --decontaminate datasets."""
    texts, sigs, text_of, word_of, files, count = [], [], [], [], [], 0
    for input_ in inputs:
        for file, meta in zip(input_.dataset.files, input_.files):
            windows = 0
            file_texts = 0
            for array in _texts(file.path):
                w = ngrams.windows(array, n)
                texts.append(array.cast(pa.large_string()))
                sigs.append(w.sig)
                text_of.append(w.text + count)
                word_of.append(w.word)
                count += len(array)
                file_texts += len(array)
                windows += len(w.sig)
            if windows == 0:
                raise DataprepError(f"--decontaminate {file.path}: no text of {n} words or more; nothing to decontaminate against "
                                    "(check the file, or lower --decontam-ngram)")
            files.append({"path": meta["path"], "sha256": meta["sha256"], "texts": file_texts, "windows": windows})
    sig = np.concatenate(sigs)
    order = np.argsort(sig, kind="stable")
    sig = sig[order]
    bits = min(MAX_BITMAP_BITS, max(16, math.ceil(math.log2(len(sig) * 64))))
    top = sig >> np.uint64(64 - bits)
    bitmap = np.zeros(1 << (bits - 3), np.uint8)
    np.bitwise_or.at(bitmap, (top >> np.uint64(3)).astype(np.intp), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
    return Benchmark(n, files, pa.concat_arrays(texts), sig, np.concatenate(text_of)[order], np.concatenate(word_of)[order], bitmap, bits)


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
