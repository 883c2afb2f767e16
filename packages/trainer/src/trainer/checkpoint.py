"""Hugging Face format checkpoints, gathered correctly under ZeRO-3, with the shards' tokenizer included."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from dataprep import DataprepError, load_tokenizer
from dataprep.format import TokenizerInfo
from dataprep.tokenizer import SENTENCEPIECE_SOURCE
from trainer.lora import has_lora, merge

# Texts on which a SentencePiece model and its conversion to tokenizer.json must give the same ids: runs
# of spaces, tabs and newlines, leading and trailing space, what NFKC rewrites, characters outside a small
# vocabulary (byte fallback), digits, and special-token spellings (plain text to SentencePiece).
PROBES = (
    "",
    "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.",
    "  two leading spaces, two trailing  ",
    "tabs\tand\t\ttabs, a CR\r\nand three newlines\n\n\n",
    "   ",
    "Ünïcödé café naïve ﬁ ① ２ 𝔘 — “quotes” … 😀 中文 日本語 한국어",
    "a\u3000full-width space and a\u00a0no-break space",
    "digits 1234567890 3.14159 -42 1e-5",
    "<s> </s> <pad> <unk> <|endoftext|> [SEP]",
    "x" * 64,
)


def save_model(model: torch.nn.Module, out: Path, rank: int, zero_stage: int) -> None:
    """`model.save_pretrained(out)` on rank 0, for a module or a DeepSpeed engine's, with any LoRA
    merged into its weights (the end of training: the model is changed in place). Under ZeRO-3 each
    rank holds a slice of every parameter: every rank must enter, and the full tensors reach rank 0 one
    parameter at a time."""
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "empty_partition_cache"):  # an engine: no parameter may still be in flight from a prefetch
        if zero_stage == 3:
            model.empty_partition_cache()
        model = model.module
    if has_lora(model):  # the next phase, and users, load a plain model
        merge(model)
    if zero_stage == 3:
        state = gathered_state_dict(model, rank)
        if rank == 0:
            model.save_pretrained(out, state_dict=state)
    elif rank == 0:
        model.save_pretrained(out)


def gathered_state_dict(model: torch.nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """A ZeRO-3 model's full state dict on rank 0 (CPU), gathering one parameter at a time, so no rank
    ever holds more than one whole parameter beside its own slices (DeepSpeed-Chat's save_zero_three_model)."""
    import deepspeed

    keys = set(model.state_dict())  # the persistent names (placeholders under ZeRO-3)
    state = {}
    for name, param in model.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            if rank == 0 and name in keys:
                state[name] = param.detach().cpu().clone()
    if rank == 0:
        state.update({name: buf.detach().cpu().clone() for name, buf in model.named_buffers() if name in keys})
    return state


def save_tokenizer(info: TokenizerInfo, out: Path) -> None:
    """Put the shards' tokenizer beside the weights: its tokenizer.json and a tokenizer_config.json that
    names transformers' generic fast class, so AutoTokenizer.from_pretrained(out) rebuilds exactly it;
    a SentencePiece model is converted (and kept beside). Call it after save_model: what AutoTokenizer
    builds depends on the model's config.json, as transformers imposes its own class on some families
    (qwen2 among them). The save then checks the result as the next phase will (dataprep's fingerprint);
    where the family's class tokenizes otherwise, it says so in one line, naming what loads the shards'
    tokenizer."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SENTENCEPIECE_SOURCE).unlink(missing_ok=True)  # an earlier save's record vouches for nothing written now
    gone = next((f for f in info.files if not Path(f).is_file()), None)
    if gone is not None:  # moved, or the shards were made on another machine: say so rather than fail at the end
        print(f"trainer: the shards' tokenizer file {gone} is gone, so {out} holds no tokenizer; copy theirs beside it", flush=True)
        return
    problem = _save_sentencepiece(info, out) if info.kind == "sentencepiece" else _save_fast(info, out)
    if problem is None and _fingerprint(str(out)) != info.fingerprint:
        problem = _mismatch(info, out)
    if problem is not None:
        print(f"trainer: {problem}", flush=True)


def _save_fast(info: TokenizerInfo, out: Path) -> None:
    """A tokenizer.json (or an HF directory's backend) saved as it is, with the shards' special tokens;
    nothing to report (save_tokenizer checks the result)."""
    from tokenizers import Tokenizer as RustTokenizer
    from transformers import AutoTokenizer

    if info.kind == "tokenizers":
        backend = RustTokenizer.from_file(info.files[0])
        beside = Path(info.files[0]).parent / "tokenizer_config.json"
        config = json.loads(beside.read_text(encoding="utf-8")) if beside.is_file() else {}
        extra = {"chat_template": config["chat_template"]} if config.get("chat_template") else {}
    else:
        hf = AutoTokenizer.from_pretrained(info.load)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:  # a Python-only tokenizer: its own files are all there is
            hf.save_pretrained(out)
            return
        extra = {"chat_template": hf.chat_template} if getattr(hf, "chat_template", None) else {}
        extra |= {name: str(getattr(hf, name)) for name in ("unk_token", "sep_token", "cls_token", "mask_token") if getattr(hf, name, None)}
    _write_fast(backend, info, out, **extra)


def _save_sentencepiece(info: TokenizerInfo, out: Path) -> str | None:
    """The model converted by transformers (it needs protobuf), BOS added as dataprep adds it, special-token
    spellings left as text (as SentencePiece reads them); the .model copied beside, and, once AutoTokenizer
    is seen to give its ids on PROBES, the record that lets dataprep (so the next phase) read the directory
    as that model (dataprep.tokenizer.SENTENCEPIECE_SOURCE). Returns the line to print when transformers
    cannot convert it."""
    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    model = Path(info.files[0])
    shutil.copy(model, out / "tokenizer.model")
    try:
        converted = PreTrainedTokenizerFast.convert_to_native_format(vocab_file=str(model))
        backend = converted["tokenizer_object"]
    except Exception as exc:  # no protobuf, or a model transformers cannot read
        return (f"transformers cannot convert the shards' SentencePiece model ({_first_line(exc)}), so AutoTokenizer cannot load "
                f"{out}; {out / 'tokenizer.model'} is that model")
    if info.bos_id is not None:
        bos = backend.id_to_token(info.bos_id)
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, info.bos_id)])
    _write_fast(backend, info, out, split_special_tokens=True, **({"unk_token": converted["unk_token"]} if converted.get("unk_token") else {}))
    try:
        auto = AutoTokenizer.from_pretrained(str(out))
    except Exception:  # this model family's tokenizer class cannot read it: save_tokenizer's check says so
        return None
    if _first_difference(auto, info) is None:
        record = {"model": "tokenizer.model", "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                  "tokenizer_sha256": hashlib.sha256(load_tokenizer(str(out)).definition).hexdigest(),
                  "checked": f"AutoTokenizer gives the model's ids on {len(PROBES)} probe texts (trainer.checkpoint.PROBES)"}
        (out / SENTENCEPIECE_SOURCE).write_text(json.dumps(record, indent=1) + "\n")
    return None


def _write_fast(backend, info: TokenizerInfo, out: Path, **extra) -> None:
    """tokenizer.json + tokenizer_config.json of transformers' generic fast class, with the shards' BOS and
    EOS, and their pad token (EOS where they have none: what batches are padded with)."""
    from transformers import PreTrainedTokenizerFast

    names = {"eos_token": info.eos_id, "bos_token": info.bos_id, "pad_token": info.pad_or_eos}
    special = {name: backend.id_to_token(i) for name, i in names.items() if i is not None}
    PreTrainedTokenizerFast(tokenizer_object=backend, **special, **extra).save_pretrained(out)


def _fingerprint(spec: str) -> str | None:
    """The fingerprint dataprep (so the next phase) gives the tokenizer at `spec`; None where it cannot load it."""
    try:
        return load_tokenizer(spec).fingerprint
    except DataprepError:
        return None


def _first_difference(hf, info: TokenizerInfo) -> str | None:
    """The first of PROBES on which a transformers tokenizer gives other ids than the shards' SentencePiece
    model (None: none)."""
    theirs = load_tokenizer(info.files[0])
    return next((text for text in PROBES if hf(text)["input_ids"] != theirs.encode([text])[0]), None)


def _mismatch(info: TokenizerInfo, out: Path) -> str:
    """One line on why AutoTokenizer.from_pretrained(out) is not the shards' tokenizer, and what loads theirs."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config = out / "config.json"
    family = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
    try:
        built = f"builds {type(AutoTokenizer.from_pretrained(str(out))).__name__}"
        built += (f" (transformers' class for {family} models)" if family else "") + ", which tokenizes otherwise than the shards"
    except Exception as exc:  # whatever transformers raises: the line says it
        built = f"fails ({_first_line(exc)})"
    auto = f"AutoTokenizer.from_pretrained({str(out)!r}) {built}"
    generic = f"PreTrainedTokenizerFast.from_pretrained({str(out)!r}) loads the shards' tokenizer"
    if info.kind == "sentencepiece":
        model = f"{out / 'tokenizer.model'} is their SentencePiece model"
        differs = _first_difference(PreTrainedTokenizerFast.from_pretrained(str(out)), info)
        if differs is not None:
            return f"transformers converts the shards' SentencePiece model otherwise (other ids for {differs!r}); {model}"
        return f"{auto}; {generic} ({model})"
    if _fingerprint(str(out / "tokenizer.json")) == info.fingerprint:
        return f"{auto}; {generic} (as does --tokenizer {out / 'tokenizer.json'})"
    return f"{out} holds no tokenizer with the fingerprint of the shards' ({info.spec}): has it changed since they were prepared?"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
