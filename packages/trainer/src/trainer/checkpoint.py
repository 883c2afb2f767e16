"""Hugging Face format checkpoints, gathered correctly under ZeRO-3, with the tokenizer included."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from dataprep.format import TokenizerInfo
from trainer.lora import has_lora, merge


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
    """Put the shards' tokenizer beside the weights, so the checkpoint loads with AutoTokenizer."""
    files = [Path(f) for f in info.files]  # absolute paths of the files that define the tokenizer
    if info.kind == "tokenizers":
        from transformers import PreTrainedTokenizerFast

        eos = _token(files[0], info.eos_id)
        pad = _token(files[0], info.pad_id) if info.pad_id is not None else eos
        PreTrainedTokenizerFast(tokenizer_file=str(files[0]), eos_token=eos, pad_token=pad).save_pretrained(out)
    elif info.kind == "transformers":
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(info.load).save_pretrained(out)
    else:
        for f in files:
            shutil.copy(f, out / f.name)


def _token(tokenizer_json: Path, token_id: int) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json)).id_to_token(token_id)
