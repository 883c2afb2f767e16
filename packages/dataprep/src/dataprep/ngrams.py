"""Word n-grams of Arrow string arrays as 64-bit signatures, computed with numpy over the arrays' bytes.

A word is a maximal run of ASCII letters and digits and of non-ASCII characters (every byte >= 0x80,
so a multi-byte character is never split), with ASCII letters lower-cased; every other byte
(whitespace, punctuation) separates words. `words` is the same definition in Python, for the exact
check of the few windows whose signatures match (decontaminate.py).

A signature is a hash, not an identity: two windows with equal words always get equal signatures, two
different windows almost never do, and the caller confirms every match with `words`. That lets a
word's hash look only at its first and last 8 bytes and its length: one unaligned 8-byte read per word
instead of a pass over every byte in 64-bit arithmetic. The byte passes are uint8 operations; the
bench's 100k rows (171 MB of text, 29M words) take about 1 s of CPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

WORD = re.compile(rb"[0-9a-z\x80-\xff]+")
_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_FIRST, _LAST, _LENGTH = np.uint64(0x9E37_79B9_7F4A_7C15), np.uint64(0xC2B2_AE3D_27D4_EB4F), np.uint64(0x1656_67B1_9E37_79F9)
_BASE = np.uint64(0xD6E8_FEB8_6659_FD93)  # odd, so invertible modulo 2**64


def words(text: str) -> list[bytes]:
    """The words of `text`, as `windows` sees them (UTF-8 bytes, ASCII lower-cased)."""
    return WORD.findall(text.encode().lower())


@dataclass(frozen=True)
class Windows:
    """Every window of n consecutive words inside one string of an array (none spans two strings)."""

    sig: np.ndarray  # uint64 signature per window
    text: np.ndarray  # int64: the index of the string it lies in
    word: np.ndarray  # int64: the index of its first word within that string


def windows(array: pa.Array, n: int, stride: int = 1) -> Windows:
    """The n-word windows of a string array (a null is an empty string) that start at a word whose
    index in the whole array is a multiple of `stride`."""
    sig, first_word = _word_signatures(array)
    count = len(sig) - n + 1
    if count <= 0:
        return Windows(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    text_of_word = np.repeat(np.arange(len(first_word) - 1), np.diff(first_word))
    at = np.arange(0, count, stride)
    at = at[text_of_word[at] == text_of_word[at + n - 1]]
    # sig_i = sum_t w[i+t] * B**t: the prefix sums of w[j] * B**j, differenced and divided by B**i.
    power, inverse = _powers(len(sig))
    prefix = np.zeros(len(sig) + 1, np.uint64)
    np.cumsum(sig * power[: len(sig)], out=prefix[1:])
    text = text_of_word[at]
    return Windows((prefix[at + n] - prefix[at]) * inverse[at], text, at - first_word[text])


def _word_signatures(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 signature per word in array order, index of each string's first word plus the total)."""
    if not isinstance(array, (pa.StringArray, pa.LargeStringArray)):
        raise TypeError(f"expected a string array, got {array.type}")
    width = np.int64 if isinstance(array, pa.LargeStringArray) else np.int32
    offsets = np.frombuffer(array.buffers()[1], width)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    data = array.buffers()[2]
    lo, size = int(offsets[0]), int(offsets[-1] - offsets[0])
    raw = np.frombuffer(data, np.uint8, count=size, offset=lo) if size else np.zeros(0, np.uint8)
    starts = offsets - lo
    # Word bytes: ASCII letters and digits, and every byte >= 0x80. A word's signature reads its bytes
    # OR 0x20: that lower-cases ASCII letters, leaves digits and lower case alone, and merges some
    # non-ASCII bytes, which only makes some signatures equal that `words` then tells apart. Eight bytes
    # of padding let the last word be read 8 bytes at a time.
    buf = np.zeros(size + 8, np.uint8)
    low = buf[:size]
    np.bitwise_or(raw, np.uint8(0x20), out=low)
    is_word = np.zeros(size + 1, bool)
    np.less(low - np.uint8(97), 26, out=is_word[:size])
    is_word[:size] |= raw - np.uint8(48) < 10
    is_word[:size] |= raw >= 128
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
    if size and is_word[0]:
        edges = np.concatenate([[0], edges])
    begin, end = edges[0::2], edges[1::2]
    # Two strings' bytes are adjacent in the buffer: a run that crosses a string boundary is two words.
    inner = np.unique(starts[1:-1])  # empty strings repeat an offset
    inner = inner[(inner > 0) & (inner < size)]
    cut = inner[is_word[inner - 1] & is_word[inner]]
    if len(cut):
        begin = np.insert(begin, np.searchsorted(begin, cut), cut)
        end = np.insert(end, np.searchsorted(end, cut), cut)
    first_word = np.searchsorted(begin, starts)
    eight = np.ndarray(shape=(size + 1,), dtype="<u8", buffer=buf, strides=(1,))  # 8 bytes from every offset
    length = (end - begin).astype(np.uint64)
    sig = eight[begin] & (_ONES >> (np.uint64(64) - (np.minimum(length, np.uint64(8)) << np.uint64(3))))
    sig *= _FIRST
    sig += length * _LENGTH
    long = np.flatnonzero(length > 8)
    sig[long] += eight[end[long] - 8] * _LAST
    sig ^= sig >> np.uint64(31)
    return sig, first_word


@lru_cache(maxsize=None)
def _powers_upto(size: int) -> tuple[np.ndarray, np.ndarray]:
    base = np.full(size, _BASE, np.uint64)
    base[0] = 1
    inverse = np.full(size, np.uint64(pow(int(_BASE), -1, 1 << 64)), np.uint64)
    inverse[0] = 1
    return np.cumprod(base, dtype=np.uint64), np.cumprod(inverse, dtype=np.uint64)


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """B**j and B**-j modulo 2**64 for j < count (at least), cached at the next power of two."""
    return _powers_upto(1 << max(count - 1, 1).bit_length())
