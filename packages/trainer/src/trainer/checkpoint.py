"""Hugging Face format checkpoints, gathered correctly under ZeRO-3, with the tokenizer included."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from dataprep.format import TokenizerInfo


def save_model(model: torch.nn.Module, out: Path, rank: int, zero_stage: int) -> None:
    """`model.save_pretrained(out)` on rank 0. Under ZeRO-3 each rank holds a slice of every parameter:
    gather them first (all ranks must enter), then save the full tensors."""
    out.mkdir(parents=True, exist_ok=True)
    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            if rank == 0:
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                model.save_pretrained(out, state_dict=state)
    elif rank == 0:
        model.save_pretrained(out)


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
