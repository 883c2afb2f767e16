"""One interface over the three tokenizer kinds users bring.

`load_tokenizer(spec)` accepts a `tokenizer.json` (HF `tokenizers`), a Hugging Face tokenizer directory
or hub id (`transformers.AutoTokenizer`), or a SentencePiece `.model`. Every kind gives batch encoding,
the prompt boundary in token space, the special-token ids and a fingerprint: the sha256 of what
defines the ids (the Rust tokenizer's full serialization, or the model files) plus the special-token
ids. Two tokenizers with the same name but other vocabularies or merges never look alike, while two
copies that differ only in cosmetic config (a model id, a max length) do.

Stage 1 of prepare (inputs.py) loads it; stage 4 (phases.py) encodes with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from dataprep.errors import DataprepError

if TYPE_CHECKING:
    from dataprep.format import Manifest

# Files that define a Hugging Face tokenizer directory (weights and model configs do not).
_HF_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
)
# The record, beside a tokenizer converted from a SentencePiece model, that the two give the same ids:
# {"model": file name, "model_sha256": ..., "tokenizer_sha256": sha256 of the converted tokenizer's definition}.
SENTENCEPIECE_SOURCE = "sentencepiece_source.json"
# End-of-text tokens we recognise in a bare tokenizer.json that has no config beside it.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "[SEP]")

Encoded = tuple[list[list[int]], list[int]]
# Encoded, plus each token's (start, end) character offsets in prefix + suffix (a list of pairs or an [n, 2] array).
WithOffsets = tuple[list[list[int]], list[int], list]


@dataclass
class Tokenizer:
    """Backend-neutral tokenizer. `encode` adds the tokenizer's own special tokens (BOS where it has one),
    exactly as calling the tokenizer on the text would."""

    spec: str
    kind: str  # "tokenizers" | "transformers" | "sentencepiece"
    files: list[Path]
    eos_id: int
    bos_id: int | None
    pad_id: int | None
    vocab_size: int
    revision: str | None
    definition: bytes = field(repr=False)  # what decides the ids: serialized tokenizer or model file bytes
    encode: Callable[[list[str]], list[list[int]]] = field(repr=False)
    encode_with_prefix: Callable[[list[str], list[str]], Encoded] = field(repr=False)
    # encode_joined(prefixes, [suffixes, ...]) -> [encode_with_prefix(prefixes, suffixes), ...], with each
    # prefix tokenized once where that provably gives the same ids (see _junction_safe).
    encode_joined: Callable[[list[str], list[list[str]]], list[Encoded]] = field(repr=False)
    decode: Callable[[list[int]], str] = field(repr=False)
    # encode_with_prefix plus each token's character offsets (None: a slow transformers tokenizer has none).
    encode_with_offsets: Callable[[list[str], list[str]], WithOffsets] | None = field(default=None, repr=False)
    # For --template chat: the Jinja chat template and the special-token strings templates refer to.
    chat_template: str | None = field(default=None, repr=False)
    special_tokens: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        # The pad id is left out: shards are unpadded, and a checkpoint that names EOS as its pad token
        # (save_tokenizer does so when there is none) still has the tokenizer its shards were made with.
        h = hashlib.sha256(json.dumps([self.eos_id, self.bos_id]).encode())
        h.update(self.definition)
        return h.hexdigest()

    def describe(self) -> dict:
        local = Path(self.spec).expanduser()
        return {
            "spec": self.spec,
            # What `inspect` reloads to decode rows: an absolute path for local tokenizers.
            "load": str(local.resolve()) if local.exists() else self.spec,
            "kind": self.kind,
            "revision": self.revision,
            "files": [str(p.resolve()) for p in self.files],
            "fingerprint": self.fingerprint,
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
            "pad_id": self.pad_id,
            "vocab_size": self.vocab_size,
        }


def load_tokenizer(spec: str, eos_token: str | None = None, workers: int | None = None) -> Tokenizer:
    """`workers` sets SentencePiece's encoding threads; HF `tokenizers` takes RAYON_NUM_THREADS from the
    environment when it first encodes (the CLI sets it from --workers)."""
    path = Path(spec).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        return _from_tokenizer_json(spec, path, eos_token)
    if path.is_file() and path.name.endswith(".model"):
        return _from_sentencepiece(spec, path, eos_token, workers)
    if path.is_dir():
        return _from_hf_dir(spec, path, eos_token, revision=None, workers=workers)
    if path.exists() or spec.endswith((".json", ".model")) or spec.startswith((".", "/", "~")):
        raise DataprepError(
            f"--tokenizer {spec}: not found or not a tokenizer.json, SentencePiece .model or tokenizer directory"
        )
    return _from_hub(spec, eos_token)


def load_recorded(manifest: Manifest) -> Tokenizer:
    """The tokenizer a prepared directory was made with, reloaded from what its manifest records (to
    decode its rows); refused when it no longer gives the same ids (its fingerprint changed)."""
    info = manifest.tokenizer
    try:
        tok = load_tokenizer(info.load, eos_token=manifest.data["options"].get("eos_token"))
    except DataprepError as exc:
        raise DataprepError(f"tokenizer {info.load} not loadable ({exc})") from None
    if tok.fingerprint != info.fingerprint:
        raise DataprepError(f"tokenizer {info.load} has changed since {manifest.out} was prepared (its fingerprint differs); "
                            "rerun dataprep prepare")
    return tok


# -- tokenizers (tokenizer.json) -------------------------------------------------------------------


# What transformers puts in place of a missing post-processor when it loads or saves a tokenizer.json:
# it adds nothing, so it must not change the fingerprint.
_NO_OP_POST_PROCESSOR = {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                         "special_tokens": {}}


def _rust_definition(serialized: str) -> bytes:
    """The serialized Rust tokenizer as fingerprint material, with a no-op post-processor read as none."""
    parsed = json.loads(serialized)
    if parsed.get("post_processor") in (None, _NO_OP_POST_PROCESSOR):
        parsed["post_processor"] = None
        return json.dumps(parsed, sort_keys=True).encode()
    return serialized.encode()


def _tokenizers_codec(tok) -> tuple[Callable, Callable, Callable, Callable, Callable]:
    """encode / encode_with_prefix / encode_joined / decode / encode_with_offsets over a `tokenizers.Tokenizer`.

    The prompt boundary is found in token space: the first token that holds the response's first
    character starts the response (`char_to_token`, computed in Rust), so a token straddling the
    boundary belongs to the response and leading special tokens (BOS) to the prompt.

    encode_joined skips that work where it can: for a tokenizer that passes `_junction_safe` and a
    row whose prompt ends in a non-space and whose response starts with a space, tokens never span
    the junction, so ids(prompt + response) = ids(prompt) + ids(response without special tokens).
    Each prompt is then tokenized once for all its responses (phase 2's chosen and rejected), without
    offsets; the other rows take the general path."""
    fast = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: for texts without a boundary
    junction_safe = _junction_safe(tok)

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in fast(texts, add_special_tokens=True)]

    def encode_with_offsets(prefixes: list[str], suffixes: list[str]) -> WithOffsets:
        encodings = tok.encode_batch([p + s for p, s in zip(prefixes, suffixes)], add_special_tokens=True)
        ids, prefix_lens, offsets = [], [], []
        for prefix, enc in zip(prefixes, encodings):
            ids.append(enc.ids)
            offsets.append(enc.offsets)
            first = enc.char_to_token(len(prefix))
            prefix_lens.append(first if first is not None else _prefix_tokens(len(prefix), enc.offsets, enc.special_tokens_mask))
        return ids, prefix_lens, offsets

    def encode_with_prefix(prefixes: list[str], suffixes: list[str]) -> Encoded:
        return encode_with_offsets(prefixes, suffixes)[:2]

    def encode_joined(prefixes: list[str], suffix_lists: list[list[str]]) -> list[Encoded]:
        if not junction_safe:
            return [encode_with_prefix(prefixes, suffixes) for suffixes in suffix_lists]
        joins = [[_joins(p, s) for p, s in zip(prefixes, suffixes)] for suffixes in suffix_lists]
        needed = [any(column) for column in zip(*joins)]
        heads = iter(e.ids for e in fast([p for p, n in zip(prefixes, needed) if n], add_special_tokens=True))
        head = [next(heads) if n else None for n in needed]
        results = []
        for suffixes, join in zip(suffix_lists, joins):
            tails = iter(fast([s for s, j in zip(suffixes, join) if j], add_special_tokens=False))
            ids = [head[i] + next(tails).ids if j else None for i, j in enumerate(join)]
            prefix_lens = [len(head[i]) if j else 0 for i, j in enumerate(join)]
            rest = [i for i, j in enumerate(join) if not j]
            if rest:
                rest_ids, rest_lens = encode_with_prefix([prefixes[i] for i in rest], [suffixes[i] for i in rest])
                for i, row, n in zip(rest, rest_ids, rest_lens):
                    ids[i], prefix_lens[i] = row, n
            results.append((ids, prefix_lens))
        return results

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=False)

    return encode, encode_with_prefix, encode_joined, decode, encode_with_offsets


def _joins(prefix: str, suffix: str) -> bool:
    """The junction rule's row condition: the prompt ends in a non-space, the response starts with an
    ASCII space, tab or newline (whitespace for every regex flavour)."""
    return bool(prefix) and not prefix[-1].isspace() and bool(suffix) and suffix[0] in " \t\n\r"


def _junction_safe(tok) -> bool:
    """True when, for text = prompt + response with the prompt ending in a non-space and the response
    starting with whitespace, ids(text) = ids(prompt) + ids(response, no special tokens).

    Why it holds for the tokenizers accepted here (GPT-2's byte-level BPE family, OPT included):
    GPT-2's pattern splits text into pre-tokens, and BPE merges stay inside a pre-token. No
    alternative of the pattern matches a non-space followed by a space (a space only ever starts a
    match, and whitespace runs contain only whitespace), so a pre-token always ends at the junction.
    The only lookahead ("not followed by a non-space") belongs to whitespace runs, which the prompt
    does not end with, and there is no lookbehind: the prompt's pre-tokens are the same alone, and so
    are the response's. An added token could still span the junction only if it contained whitespace or
    stripped it (lstrip/rstrip), so such tokenizers are excluded, as are normalizers (other than
    none), BPE dropout, and post-processors that add anything after the text."""
    spec = json.loads(tok.to_str())
    model, pre, post = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("post_processor")
    if spec.get("normalizer") is not None or model.get("type") != "BPE" or model.get("dropout"):
        return False
    if not (pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")):
        return False
    if post is not None and post.get("type") not in ("ByteLevel", "TemplateProcessing"):
        return False
    if post is not None and post.get("type") == "TemplateProcessing":
        single = post.get("single") or []
        if not single or "Sequence" not in single[-1]:  # something (EOS, say) after the text
            return False
    for added in spec.get("added_tokens") or []:
        if any(c.isspace() for c in added["content"]) or added.get("lstrip") or added.get("rstrip"):
            return False
    return True


def _prefix_tokens(prefix_end: int, offsets, special_mask) -> int:
    """Leading tokens that are special or end inside the prefix (the offsets-based definition). Zero-width
    tokens just before the first token past the prefix, at its start, spell its character with it
    (SentencePiece's byte pieces, see _piece_offsets): they start the suffix too."""
    count = 0
    for (_, end), special in zip(offsets, special_mask):
        if not special and end > prefix_end:
            break
        count += 1
    while 0 < count < len(offsets) and not special_mask[count - 1] and offsets[count - 1][0] == offsets[count - 1][1] == offsets[count][0]:
        count -= 1
    return count


def _from_tokenizer_json(spec: str, path: Path, eos_token: str | None) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    try:
        tok = RustTokenizer.from_file(str(path))
    except Exception as exc:
        raise DataprepError(f"--tokenizer {spec}: not a valid tokenizer.json ({str(exc).splitlines()[0]})") from None
    files = [path]
    config = _read_config(path.parent / "tokenizer_config.json")
    if config is not None:
        files.append(path.parent / "tokenizer_config.json")
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}

    def token_id(name: str, chosen: str | None) -> int | None:
        text = chosen or _config_token(config, name)
        if text is None:
            return None
        found = tok.token_to_id(text)
        if found is None:
            raise DataprepError(f"--tokenizer {spec}: {name} {text!r} is not in its vocabulary")
        return found

    eos = eos_token or _config_token(config, "eos_token") or next((t for t in _EOS_CANDIDATES if t in special), None)
    if eos is None:
        raise DataprepError(f"--tokenizer {spec}: cannot tell its end-of-text token; pass --eos-token TOKEN")
    encode, encode_with_prefix, encode_joined, decode, encode_with_offsets = _tokenizers_codec(tok)
    ids = {"bos_token": token_id("bos_token", None), "eos_token": token_id("eos_token", eos)}
    return Tokenizer(
        spec=spec,
        kind="tokenizers",
        files=files,
        eos_id=token_id("eos_token", eos),
        bos_id=token_id("bos_token", None),
        pad_id=token_id("pad_token", None),
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        revision=None,
        definition=_rust_definition(tok.to_str()),
        encode=encode,
        encode_with_prefix=encode_with_prefix,
        encode_joined=encode_joined,
        decode=decode,
        encode_with_offsets=encode_with_offsets,
        chat_template=_pick_template((config or {}).get("chat_template"), path.parent / "chat_template.jinja"),
        special_tokens={name: tok.id_to_token(i) for name, i in ids.items() if i is not None},
    )


def _pick_template(value: object, beside: Path | None = None) -> str | None:
    """A config's chat template: a string, or a list/dict of named ones (the "default" is used)."""
    if isinstance(value, list):
        value = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
    if isinstance(value, dict):
        value = value.get("default")
    if isinstance(value, str) and value:
        return value
    if beside is not None and beside.is_file():
        return beside.read_text(encoding="utf-8")
    return None


def _read_config(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataprepError(f"{path}: not valid JSON ({exc})") from None


def _config_token(config: dict | None, name: str) -> str | None:
    value = (config or {}).get(name)
    return value.get("content") if isinstance(value, dict) else value


# -- transformers (directory or hub id) -----------------------------------------------------------


def _from_hub(spec: str, eos_token: str | None) -> Tokenizer:
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(spec, allow_patterns=list(_HF_FILES) + ["*.model"]))
    except Exception as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataprepError(
            f"--tokenizer {spec}: not a local path and cannot be fetched from the Hugging Face Hub{offline} ({first}); "
            "download the tokenizer files and pass their directory"
        ) from None
    return _from_hf_dir(spec, local, eos_token, revision=local.name)


def _from_hf_dir(spec: str, path: Path, eos_token: str | None, revision: str | None, workers: int | None = None) -> Tokenizer:
    from transformers import AutoTokenizer

    files = sorted(p for p in path.iterdir() if p.name in _HF_FILES or p.suffix == ".model")
    if not files:
        raise DataprepError(f"--tokenizer {spec}: no tokenizer files ({', '.join(_HF_FILES[:3])}, ...) in {path}")
    try:
        hf = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise DataprepError(f"--tokenizer {spec}: transformers cannot load it ({str(exc).splitlines()[0]})") from None
    if eos_token is not None:
        hf.eos_token = eos_token
    if hf.eos_token_id is None:
        raise DataprepError(f"--tokenizer {spec}: it defines no eos_token; pass --eos-token TOKEN")
    backend = getattr(hf, "backend_tokenizer", None)
    definition = _rust_definition(backend.to_str()) if backend is not None else b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in files)
    source = _converted_from(path, definition)
    if source is not None:  # read as the SentencePiece model it was checked against: the same ids and fingerprint
        return _from_sentencepiece(spec, source, eos_token or hf.eos_token, workers)
    if backend is not None:
        # Fast tokenizers: the Rust backend gives the same ids as hf(text) and char offsets.
        encode, encode_with_prefix, encode_joined, decode, encode_with_offsets = _tokenizers_codec(backend)
    else:
        encode, encode_with_prefix, decode = _slow_hf_codec(hf)
        encode_joined, encode_with_offsets = _each(encode_with_prefix), None
    return Tokenizer(
        spec=spec,
        kind="transformers",
        files=files,
        eos_id=hf.eos_token_id,
        bos_id=hf.bos_token_id,
        pad_id=hf.pad_token_id,
        vocab_size=len(hf),
        revision=revision,
        definition=definition,
        encode=encode,
        encode_with_prefix=encode_with_prefix,
        encode_joined=encode_joined,
        decode=decode,
        encode_with_offsets=encode_with_offsets,
        chat_template=_pick_template(getattr(hf, "chat_template", None), path / "chat_template.jinja"),
        special_tokens={name: getattr(hf, name) for name in ("bos_token", "eos_token") if isinstance(getattr(hf, name, None), str)},
    )


def _converted_from(path: Path, definition: bytes) -> Path | None:
    """The SentencePiece model that a directory's tokenizer was converted from and checked against, as its
    SENTENCEPIECE_SOURCE record names it (a trainer checkpoint of SentencePiece shards writes one), while
    the record still holds: the model file, and the tokenizer AutoTokenizer builds here, are those it
    was checked with. Else None: the directory is read as any other."""
    record = _read_config(path / SENTENCEPIECE_SOURCE)
    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        return None
    model = path / Path(record["model"]).name
    if not model.is_file() or hashlib.sha256(model.read_bytes()).hexdigest() != record.get("model_sha256"):
        return None
    return model if hashlib.sha256(definition).hexdigest() == record.get("tokenizer_sha256") else None


def _slow_hf_codec(hf) -> tuple[Callable, Callable, Callable]:
    """Python tokenizers have no offsets: the prompt is the longest shared prefix of both encodings."""

    def encode(texts: list[str]) -> list[list[int]]:
        return hf(texts, add_special_tokens=True)["input_ids"]

    def encode_with_prefix(prefixes: list[str], suffixes: list[str]) -> Encoded:
        whole = encode([p + s for p, s in zip(prefixes, suffixes)])
        return whole, [_shared_prefix(a, b) for a, b in zip(whole, encode(prefixes))]

    return encode, encode_with_prefix, lambda ids: hf.decode(ids)


def _each(encode_with_prefix: Callable) -> Callable:
    """encode_joined for codecs without a shortcut: one encode_with_prefix per suffix list."""
    return lambda prefixes, suffix_lists: [encode_with_prefix(prefixes, suffixes) for suffixes in suffix_lists]


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# -- SentencePiece (.model) -----------------------------------------------------------------------


def _from_sentencepiece(spec: str, path: Path, eos_token: str | None, workers: int | None) -> Tokenizer:
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:
        raise DataprepError(f"--tokenizer {spec}: not a valid SentencePiece model ({str(exc).splitlines()[0]})") from None
    eos = sp.piece_to_id(eos_token) if eos_token else sp.eos_id()
    if eos is None or eos < 0 or (eos_token and sp.id_to_piece(eos) != eos_token):
        raise DataprepError(f"--tokenizer {spec}: no end-of-text token; pass --eos-token PIECE")
    # Like LLaMA's tokenizer (which DeepSpeed-Chat uses for SentencePiece models): BOS first, when defined.
    bos = sp.bos_id() if sp.bos_id() >= 0 else None
    head = [bos] if bos is not None else []
    threads = workers or os.cpu_count() or 1

    def encode(texts: list[str]) -> list[list[int]]:
        return [head + ids for ids in sp.encode(texts, out_type=int, num_threads=threads)]

    def mapped(prefixes: list[str], suffixes: list[str]) -> tuple[list[dict], Encoded]:
        pieces = sp.encode([p + s for p, s in zip(prefixes, suffixes)], return_type="offset_mapping", num_threads=threads)
        # Offsets are character offsets into the input; the head (BOS) is before it.
        prefix_lens = [len(head) + _prefix_tokens(len(p), m["offsets"], [0] * len(m["ids"])) for p, m in zip(prefixes, pieces)]
        return pieces, ([head + m["ids"] for m in pieces], prefix_lens)

    def encode_with_prefix(prefixes: list[str], suffixes: list[str]) -> Encoded:
        return mapped(prefixes, suffixes)[1]

    def encode_with_offsets(prefixes: list[str], suffixes: list[str]) -> WithOffsets:
        pieces, (ids, prefix_lens) = mapped(prefixes, suffixes)
        return ids, prefix_lens, _piece_offsets(pieces, len(head))

    return Tokenizer(
        spec=spec,
        kind="sentencepiece",
        files=[path],
        eos_id=eos,
        bos_id=bos,
        pad_id=sp.pad_id() if sp.pad_id() >= 0 else None,
        vocab_size=sp.get_piece_size(),
        revision=None,
        definition=path.read_bytes(),
        encode=encode,
        encode_with_prefix=encode_with_prefix,
        encode_joined=_each(encode_with_prefix),
        decode=lambda ids: sp.decode([i for i in ids]),
        encode_with_offsets=encode_with_offsets,
    )


def _piece_offsets(pieces: list[dict], head: int) -> list[np.ndarray]:
    """Each row's (start, end) character offsets as an [n, 2] array, its `head` special tokens first at
    (0, 0), every piece covering the character it spells. One numpy pass over the batch.

    SentencePiece spells a character outside its vocabulary as byte pieces (byte fallback) and gives
    all but the last zero width: "北" at 11 is <0xE5>(11,11) <0x8C>(11,11) <0x97>(11,12). A zero-width
    piece takes the extent of the next piece with a width when that one starts at the same character,
    so the loss mask marks the three with their character (_prefix_tokens applies the same rule at the
    prompt's end)."""
    if not pieces:
        return []
    counts = np.fromiter((head + len(m["ids"]) for m in pieces), np.int64, len(pieces))
    heads = [(0, 0)] * head
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(chain(heads, m["offsets"]) for m in pieces)), np.int64,
                       2 * int(counts.sum())).reshape(-1, 2)
    start, end = flat[:, 0], flat[:, 1]  # views: widening `end` widens `flat`
    row, first = np.repeat(np.arange(len(pieces)), counts), np.cumsum(counts) - counts
    zero, wide = np.flatnonzero(start == end), np.flatnonzero(start < end)
    zero = zero[zero - first[row[zero]] >= head]  # the head's specials keep zero width
    following = np.searchsorted(wide, zero)  # the first piece with a width after each zero-width one
    zero, following = zero[following < wide.size], wide[following[following < wide.size]]
    same = (row[following] == row[zero]) & (start[following] == start[zero])
    end[zero[same]] = end[following[same]]
    return np.split(flat, first[1:])
