"""DPO's reference log-probs, computed once before training and kept in a side file.

The reference model is frozen, so its log-prob of every answer is known before training starts.
`cached_or_computed` reads them from OUTPUT_DIR/reference/<side>.arrow when that file was made from
the same shards (their sha256s) by the same reference (its fingerprint) in the same precision, and
otherwise computes them (every rank a part, in lockstep, as ZeRO-3 needs) and writes the file
atomically. Training then needs no reference model in memory. A file that is unreadable, or whose
values no longer match the checksum it carries, is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import torch

from dataprep.format import READ_ERRORS, TokenizerInfo, file_sha256, sha256_json
from trainer import runtime
from trainer.dpo import answer_logps
from trainer.shard_dataset import ShardDataset

METADATA_KEY = b"rlhfkit.reference"
VERSION = 2  # bump when what is computed or how it is keyed changes (2: the key has how random weights were drawn)
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "config.json")


def fingerprint(model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, seed: int,
                partitioned_on: str | None) -> str:
    """What identifies the reference's weights: the sha256 of a directory's weight and config files, or a
    hub id at its resolved commit; or a config's sha256. Random weights add how they were drawn: a model
    built from a config, and a checkpoint whose embeddings grow for the tokenizer (new random rows).

    `partitioned_on`: the device type a ZeRO-3 model is built on (None: built whole). deepspeed.zero.Init
    creates each parameter on that device, from that device's generator, so a partitioned model gets
    other weights than a whole one from the same config and seed. It broadcasts rank 0's values, so
    the world size changes nothing (measured: 1 and 2 ranks build the same weights)."""
    drawn = f"seed {seed}, built " + (f"partitioned on {partitioned_on}" if partitioned_on else "whole")
    if model_config is not None:
        return f"config sha256 {file_sha256(Path(model_config))}, {drawn}"
    from trainer.models import grows_embeddings, load_config

    config = load_config(model_name_or_path)  # the config alone: no weights load here
    root = Path(model_name_or_path)
    if root.is_dir():
        files = sorted({f for pattern in WEIGHT_FILES for f in root.glob(pattern)})
        weights = "files sha256 " + sha256_json({f.name: file_sha256(f) for f in files})
    else:
        weights = f"{model_name_or_path}@{getattr(config, '_commit_hash', None)}"
    if grows_embeddings(config.vocab_size, tokenizer):
        return f"{weights}, embeddings grown for {tokenizer.vocab_size} tokens, {drawn}"
    return weights


def cache_key(shards: ShardDataset, reference: str, dtype: str) -> str:
    return sha256_json({"version": VERSION, "shards": shards.sha256, "reference": reference, "dtype": dtype})


@dataclass(frozen=True)
class Cache:
    """One side's side file."""

    path: Path
    key: str

    def read(self, rows: int) -> np.ndarray | None:
        """The cached [rows, 2] (chosen, rejected) log-probs, or None when there is no file or it was
        made from other shards or another reference (then it is recomputed)."""
        if not self.path.exists():
            return None
        try:
            table = pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()
            meta = json.loads(table.schema.metadata[METADATA_KEY])
            values = np.stack([table.column(c).to_numpy() for c in ("chosen", "rejected")], axis=1)
        except (*READ_ERRORS, KeyError, TypeError) as exc:
            raise SystemExit(f"trainer: {self.path}: not a readable reference log-prob file ({type(exc).__name__}); "
                             "delete it to recompute") from None
        if meta.get("key") != self.key:
            return None
        if len(values) != rows or meta.get("sha256") != _checksum(values):
            raise SystemExit(f"trainer: {self.path}: its values do not match its checksum or its shards' {rows} rows (damaged); "
                             "delete it to recompute")
        return values

    def write(self, values: np.ndarray) -> None:
        meta = {METADATA_KEY: json.dumps({"key": self.key, "sha256": _checksum(values)})}
        table = pa.table({"chosen": values[:, 0], "rejected": values[:, 1]}).replace_schema_metadata(meta)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(partial, self.path)  # a killed run leaves a .partial, never a file that looks complete


def _checksum(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


@torch.no_grad()
def compute(engine, dataset: ShardDataset, collate: Callable, batch_size: int, rank: int, world: int,
            device: torch.device) -> np.ndarray:
    """[rows, 2] answer log-probs of `dataset`'s pairs under `engine`, on every rank. Each rank scores
    its share; the sampler pads the shares to one length by repeating rows, so every rank runs the
    same forward passes (ZeRO-3 gathers parameters collectively), and the repeats land on the same
    rows with the same values."""
    from tqdm import tqdm

    loader = runtime.loader(dataset, collate, batch_size, rank, world, seed=0, shuffle=False)
    mine = torch.tensor(list(loader.sampler), dtype=torch.float64, device=device)
    parts = []
    for batch in tqdm(loader, desc=f"reference log-probs ({dataset.side})", disable=rank != 0, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _ = answer_logps(logits, batch["input_ids"], batch["attention_mask"], batch["prompt_len"])
        parts.append(torch.stack(logps.double().chunk(2), dim=1))  # [B, 2]
    scored = torch.cat([mine.unsqueeze(1), torch.cat(parts)], dim=1)  # [share, 3]: row, chosen, rejected
    everyone = [torch.empty_like(scored) for _ in range(world)]
    torch.distributed.all_gather(everyone, scored)
    table = torch.cat(everyone).cpu().numpy()
    values = np.zeros((len(dataset), 2))
    values[table[:, 0].astype(np.int64)] = table[:, 1:]
    return values


class WithReference:
    """A phase-2 dataset whose rows also carry their reference log-probs (`ref_logps`: chosen, rejected);
    otherwise the ShardDataset it wraps (its lengths, tokenizer and limits, for --packing)."""

    def __init__(self, dataset: ShardDataset, values: np.ndarray):
        self.dataset, self.values = dataset, values

    def __getattr__(self, name: str):
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        rows = self.dataset.__getitems__(indices)
        for row, i in zip(rows, indices):
            row["ref_logps"] = self.values[i]
        return rows
