"""Word n-grams of Arrow string arrays as 64-bit signatures, computed with numpy over the arrays' bytes.

Words are what a reader sees, and both sides of decontamination see them the same way:
  - text is NFKC-normalised and casefolded: `Ｆｕｌｌ` is `full`, `ﬁ` is `fi`, `Straße` is `STRASSE`;
  - letters, digits and marks make words; punctuation, symbols, spaces and controls (Unicode
    categories P, S, Z and Cc) separate them, so `don’t` and `don't` are both `don t`, a no-break
    space is a space and an em dash a break; invisible format characters (category Cf: a soft hyphen,
    a zero-width joiner, but not the zero-width space, which separates) and variation selectors vanish;
  - each CJK character (Han, hiragana, katakana) is a word of its own, since Chinese and Japanese put
    no spaces between words.
`words` is that definition in Python, for the exact check of the few windows whose signatures match
(decontaminate.py); `windows` gives the same words' signatures, computed with numpy.

How the numpy pass gets there cheaply. ASCII letters and digits are word bytes, lower-cased; every
other ASCII byte separates. A table of code points settles most non-ASCII characters in the same
pass: a plain separator (NFKC makes it separators only, and it composes with no neighbour: curly
quotes, dashes, bullets, no-break spaces, emoji) separates, and a CJK character that NFKC and
casefolding leave alone and that composes with nothing (most Han) is a word by itself. What is left,
runs holding other non-ASCII characters (`café`, `ß`, the kana that take a voicing mark), goes
through `_normal` in Python, once per distinct run (cached): 12,000 of the bench's 29M words, where
490,000 hold a non-ASCII byte. Normalising run by run (a run ends at ASCII punctuation or space) is
normalising the whole text except where a combining mark follows ASCII punctuation: `<` and U+0338
compose to `≮`; here they stay apart.

A signature is a hash, not an identity: two windows with equal words always get equal signatures, two
different windows almost never do, and the caller confirms every match with `words`. That lets a
word's hash look only at its first and last 8 bytes and its length: one unaligned 8-byte read per word
instead of a pass over every byte in 64-bit arithmetic. The byte passes are uint8 operations; the
bench's 100k rows (171 MB of text, 29M words) take about 1.2 s of CPU; Chinese text, a word per
character, goes at about 18 MB/s, kana-heavy Japanese at about 10.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa

RUN = re.compile(rb"[0-9A-Za-z\x80-\xff]+")  # what `words` normalises: the text split at ASCII punctuation and spaces
_CJK = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))  # kana, Han
CJK = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _CJK) + "]")
_ZERO_WIDTH_SPACE = 0x200B
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))
_TABLE_END = 0x20000  # the byte pass's table covers the BMP and plane 1 (emoji); above: rare Han, tags, private use
_OTHER, _SEPARATOR, _ALONE = range(3)  # the byte pass's classes of a non-ASCII character
_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_FIRST, _LAST, _LENGTH = np.uint64(0x9E37_79B9_7F4A_7C15), np.uint64(0xC2B2_AE3D_27D4_EB4F), np.uint64(0x1656_67B1_9E37_79F9)
_BASE = np.uint64(0xD6E8_FEB8_6659_FD93)  # odd, so invertible modulo 2**64


def words(text: str) -> list[bytes]:
    """The words of `text`, as `windows` sees them (UTF-8 bytes)."""
    out: list[bytes] = []
    for run in RUN.findall(text.encode()):
        if run.isascii():
            out.append(run.lower())
        else:
            out.extend(_normal(run))
    return out


@lru_cache(maxsize=1 << 14)
def _normal(run: bytes) -> tuple[bytes, ...]:
    """The words of one run of word bytes that holds non-ASCII characters."""
    text = unicodedata.normalize("NFKC", run.decode()).casefold().translate(_characters().translate)
    return tuple(w.encode() for w in CJK.sub(r" \g<0> ", text).split())


@dataclass(frozen=True)
class _Characters:
    translate: dict[int, str | None]  # for str.translate: separators to a space, invisible characters to nothing
    kind: np.ndarray  # uint8 per code point below _TABLE_END: _SEPARATOR, _ALONE (a word by itself) or _OTHER


@lru_cache(maxsize=None)
def _characters() -> _Characters:
    """The character classes, from unicodedata on first use (70 ms of CPU)."""
    translate: dict[int, str | None] = {c: " " for c in range(128) if not chr(c).isalnum()}
    for c in itertools.chain(range(0x80, _TABLE_END), range(0xE0000, 0xE1000)):
        kind = unicodedata.category(chr(c))
        if kind[0] in "PSZ" or kind == "Cc" or c == _ZERO_WIDTH_SPACE:
            translate[c] = " "
        elif kind == "Cf" or (kind == "Mn" and any(c in r for r in _VARIATION_SELECTORS)):
            translate[c] = None
    # A character that starts or ends a canonical composition may change with its neighbours under
    # NFKC, and a non-starter (a mark) reorders across them: the byte pass leaves those to _normal.
    composing = set()
    for c in range(0xC0, _TABLE_END):
        parts = unicodedata.decomposition(chr(c)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            composing.update(int(p, 16) for p in parts)

    def plain(ch: str) -> bool:
        return translate.get(ord(ch), "") == " " and ord(ch) not in composing and not unicodedata.combining(ch)

    kind = np.full(_TABLE_END, _OTHER, np.uint8)
    for c in translate:
        if 0x80 <= c < _TABLE_END and plain(chr(c)) and all(plain(ch) for ch in unicodedata.normalize("NFKC", chr(c))):
            kind[c] = _SEPARATOR
    # A CJK character that NFKC and casefolding leave alone and that composes with nothing is a word
    # by itself (most Han; not the kana that take a voicing mark, which _normal composes).
    for c in itertools.chain(*(range(a, min(b + 1, _TABLE_END)) for a, b in _CJK)):
        ch = chr(c)
        if c not in translate and c not in composing and unicodedata.normalize("NFKC", ch) == ch == ch.casefold():
            kind[c] = _ALONE
    return _Characters(translate, kind)


@dataclass(frozen=True)
class Windows:
    """Every window of n consecutive words inside one string of an array (none spans two strings)."""

    sig: np.ndarray  # uint64 signature per window
    text: np.ndarray  # int64: the index of the string it lies in
    word: np.ndarray  # int64: the index of its first word within that string


@dataclass(frozen=True)
class Words:
    """Every word of a string array (a null is an empty string), as a signature."""

    sig: np.ndarray  # uint64 per word, in array order
    first: np.ndarray  # int64: the index of each string's first word, then the number of words

    @property
    def counts(self) -> np.ndarray:
        """Words per string."""
        return np.diff(self.first)

    def windows(self, n: int, stride: int = 1) -> Windows:
        """The n-word windows that start at a word whose index in the whole array is a multiple of `stride`."""
        count = len(self.sig) - n + 1
        if count <= 0:
            return Windows(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        at = np.arange(0, count, stride)
        at = at[self._text_of_word[at] == self._text_of_word[at + n - 1]]
        text = self._text_of_word[at]
        # sig_i = sum_t w[i+t] * B**t: the prefix sums of w[j] * B**j, differenced and divided by B**i.
        inverse = _powers(len(self.sig))[1]
        return Windows((self._prefix[at + n] - self._prefix[at]) * inverse[at], text, at - self.first[text])

    def sampled(self, n: int, stride: int) -> np.ndarray:
        """The signatures of the n-word windows that start at words 0, stride, 2 * stride... of the
        whole array, those that run on into the next string included: a lookup, whose every hit is
        confirmed, loses nothing by them and skips `windows`' bookkeeping of where each one lies."""
        count = len(self.sig) - n + 1
        if count <= 0:
            return np.zeros(0, np.uint64)
        return (self._prefix[n : count + n : stride] - self._prefix[:count:stride]) * _powers(len(self.sig))[1][:count:stride]

    def string_of(self, word: np.ndarray) -> np.ndarray:
        """The index of the string that each word (an index into the whole array) lies in."""
        return np.searchsorted(self.first, word, side="right") - 1

    @cached_property
    def _text_of_word(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.first) - 1), np.diff(self.first))

    @cached_property
    def _prefix(self) -> np.ndarray:
        power = _powers(len(self.sig))[0]
        prefix = np.zeros(len(self.sig) + 1, np.uint64)
        np.cumsum(self.sig * power[: len(self.sig)], out=prefix[1:])
        return prefix


def windows(array: pa.Array, n: int, stride: int = 1) -> Windows:
    """The n-word windows of a string array (a null is an empty string) that start at a word whose
    index in the whole array is a multiple of `stride`."""
    return signatures(array).windows(n, stride)


def signatures(array: pa.Array) -> Words:
    """The words of a string array, each as a uint64 signature."""
    if not isinstance(array, (pa.StringArray, pa.LargeStringArray)):
        raise TypeError(f"expected a string array, got {array.type}")
    width = np.int64 if isinstance(array, pa.LargeStringArray) else np.int32
    offsets = np.frombuffer(array.buffers()[1], width)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    lo, size = int(offsets[0]), int(offsets[-1] - offsets[0])
    raw = np.frombuffer(array.buffers()[2], np.uint8, count=size, offset=lo) if size else np.zeros(0, np.uint8)
    starts = offsets - lo
    buf = _lowered(raw)
    # Word bytes: ASCII letters and digits, and every byte >= 0x80 but those of plain separators.
    is_word = np.zeros(size + 1, bool)
    np.less(buf[:size] - np.uint8(97), 26, out=is_word[:size])
    is_word[:size] |= raw - np.uint8(48) < 10
    odd = np.flatnonzero(raw >= 128)  # few in most text: set one by one, not in a pass over every byte
    cuts = starts[1:-1]  # a run that crosses a string boundary is two words
    if len(odd):
        is_word[odd] = True
        odd, alone = _classify(raw, odd, is_word)
        cuts = np.concatenate([cuts, alone])
    begin, end = _runs(is_word, cuts)
    sig, first = _hash(buf, begin, end), np.searchsorted(begin, starts)
    if len(odd):
        sig, first = _renormalised(raw, begin, end, odd, sig, first)
    return Words(sig, first)


def _lowered(raw: np.ndarray) -> np.ndarray:
    """The bytes OR 0x20, and 8 bytes of padding so that the last word can be read 8 bytes at a time.
    OR 0x20 lower-cases ASCII letters, leaves digits and lower case alone, and merges some non-ASCII
    bytes, which only makes some signatures equal that `words` then tells apart."""
    buf = np.zeros(len(raw) + 8, np.uint8)
    np.bitwise_or(raw, np.uint8(0x20), out=buf[: len(raw)])
    return buf


def _classify(raw: np.ndarray, high: np.ndarray, is_word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the code-point table to the non-ASCII characters (`high`: the positions of the bytes >= 0x80):
    clear `is_word` on the bytes of plain separators, and return the positions of the bytes left to
    `_normal` and the offsets where a run is cut around a character that is a word by itself."""
    lead = raw[high] >= 0xC0  # the first byte of each character (valid UTF-8: Arrow validates it)
    first = high[lead]
    code = raw[first].astype(np.int32)
    length = 2 + (code >= 0xE0) + (code >= 0xF0)
    code &= np.where(length == 2, 0x1F, np.where(length == 3, 0x0F, 0x07))
    for k in range(1, 4):
        more = np.flatnonzero(length > k)
        code[more] = code[more] << 6 | (raw[first[more] + k] & 0x3F)
    table = _characters().kind
    kind = np.full(len(first), _OTHER, np.uint8)
    inside = np.flatnonzero(code < len(table))
    kind[inside] = table[code[inside]]
    of_byte = np.repeat(kind, length)  # each byte's character's class: a character's bytes are adjacent in `high`
    is_word[high[of_byte == _SEPARATOR]] = False
    alone = kind == _ALONE
    return high[of_byte == _OTHER], np.concatenate([first[alone], first[alone] + length[alone]])


def _runs(is_word: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(begin, end) byte offsets of every maximal run of word bytes, also cut at each offset in `cuts`."""
    size = len(is_word) - 1
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
    if size and is_word[0]:
        edges = np.concatenate([[0], edges])
    begin, end = edges[0::2], edges[1::2]
    inner = np.sort(cuts)  # an offset may repeat (an empty string, two characters that are words alone)
    inner = inner[(inner > 0) & (inner < size) & np.append(True, inner[1:] != inner[:-1])]
    cut = inner[is_word[inner - 1] & is_word[inner]]
    if len(cut):
        begin = np.insert(begin, np.searchsorted(begin, cut), cut)
        end = np.insert(end, np.searchsorted(end, cut), cut)
    return begin, end


def _hash(buf: np.ndarray, begin: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The signature of each word buf[begin:end] (`buf` from `_lowered`)."""
    eight = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # 8 bytes from every offset
    length = (end - begin).astype(np.uint64)
    sig = eight[begin] & (_ONES >> (np.uint64(64) - (np.minimum(length, np.uint64(8)) << np.uint64(3))))
    sig *= _FIRST
    sig += length * _LENGTH
    long = np.flatnonzero(length > 8)
    sig[long] += eight[end[long] - 8] * _LAST
    sig ^= sig >> np.uint64(31)
    return sig


def _renormalised(raw: np.ndarray, begin: np.ndarray, end: np.ndarray, odd: np.ndarray, sig: np.ndarray,
                  first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sig, first) with each run that holds a byte at `odd` replaced by the words `_normal` makes of
    it: none, one or several. The runs are few (0.04% of English words): the rest is copied in slices."""
    runs = np.unique(np.searchsorted(begin, odd, side="right") - 1)
    made = [_normal(raw[b:e].tobytes()) for b, e in zip(begin[runs].tolist(), end[runs].tolist())]
    new = [w for m in made for w in m]
    length = np.array([len(w) for w in new], np.int64)
    at = np.cumsum(length + 1) - length - 1  # the new words laid out with one byte between them
    new_sig = _hash(_lowered(np.frombuffer(b" ".join(new), np.uint8)), at, at + length)
    count = np.array([len(m) for m in made], np.int64)
    bounds = np.concatenate([[0], np.cumsum(count)]).tolist()
    pieces, done = [], 0
    for i, run in enumerate(runs.tolist()):
        pieces += [sig[done:run], new_sig[bounds[i] : bounds[i + 1]]]
        done = run + 1
    pieces.append(sig[done:])
    gained = np.concatenate([[0], np.cumsum(count - 1)])  # words gained by the runs before each run
    return np.concatenate(pieces), first + gained[np.searchsorted(runs, first)]


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c - 1 for each c of `counts`, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


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
