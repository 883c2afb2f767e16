"""Packed batches (--packing) for phases 1 and 2, and for any phase that trains on rows or pairs: several
rows share one sequence of at most max_seq_len tokens, each restarting its positions and attending only
to itself, so no compute goes to padding.

    PackSampler     each epoch's plan (dataprep.packing: best-fit decreasing on token lengths, drawn
                    from the seed and the epoch) -> this rank's packs; resumable like ResumableSampler
    PackedRows      a ShardDataset read pack by pack
    PackedCollator  packs -> a packed batch (below)
    model_inputs    a packed batch -> what the model runs on: a block-diagonal causal mask (eager,
                    SDPA: every family but Bloom's, see takes_block_mask), or one flattened row whose
                    position ids mark the rows (flash attention's variable-length kernel)
    last_tokens     where each row ends, to read a row's own score (the reward model)

A packed batch of P packs (all tensors; what the loop moves to the device):

    input_ids     [S, W]  the sequences, S = P * sequences per pack: sequence j of pack p is row j * P + p
    position_ids  [S, W]  0, 1, ... within each original row; the padding at a sequence's end runs from 0 too
    segment       [S, W]  the original row each token belongs to; -1 on padding
    row_seq, row_start, row_len, prompt_len   [R]  each original row's sequence, first position, length
                          and prompt tokens (at most its length), in pack coordinates

Rows are numbered part by part: phase 1, its rows; pairs, every pair's chosen row and then every pair's
rejected row in the same order, so rows k and n + k (n pairs) are pair k: DeepSpeed-Chat's chosen-then-
rejected layout, by row. A caller reduces per row with these: the reward model reads each row's score at
`last_tokens`; DPO sums a row's token log-probs over `segment == k` from position row_start + prompt_len.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from dataprep.format import TOKEN_COLUMNS
from dataprep.packing import plan
from trainer.collate import IGNORE_INDEX, pair_extras, trained_tokens
from trainer.shard_dataset import ShardDataset

VARLEN = ("flash_attention_2", "flash_attention_3")  # kernels that take packed rows from position ids
MASKED = ("eager", "sdpa")  # kernels that take a 4-D mask


@dataclass(frozen=True)
class Pack:
    """One pack as the collator gets it: its items' shard rows, and the sequence of the pack each
    item's part goes into ([items, parts])."""

    rows: list[dict]
    seqs: np.ndarray


class PackSampler(Sampler):
    """This rank's packs of the current epoch's plan, each as (item indices, their parts' sequences).
    Every rank draws the same plan, drops its last `len % world` packs so that all ranks take as many
    steps (as DistributedSampler drops rows), and takes every world-th pack from its rank. `skip` packs
    of the epoch were consumed before a resume (set it back to 0 for the next epoch)."""

    skip = 0

    def __init__(self, lengths: np.ndarray, capacity: int, rank: int, world: int, seed: int):
        self.lengths, self.capacity, self.rank, self.world, self.seed = lengths, capacity, rank, world, seed
        self.epoch = 0
        self._share: tuple[int, list[tuple[np.ndarray, np.ndarray]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def share(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This rank's packs of the current epoch (planned once per epoch)."""
        if self._share is None or self._share[0] != self.epoch:
            packs = plan(self.lengths, self.capacity, self.seed, self.epoch)
            usable = len(packs) - len(packs) % self.world
            self._share = (self.epoch, [packs.pack(p) for p in range(self.rank, usable, self.world)])
        return self._share[1]

    def __iter__(self):
        return iter(self.share()[self.skip:])

    def __len__(self) -> int:
        return len(self.share()) - self.skip


class PackedRows:
    """A ShardDataset read pack by pack: what torch's DataLoader asks for a batch of packs."""

    def __init__(self, rows: ShardDataset):
        self.rows = rows

    def __getitems__(self, packs: list[tuple[np.ndarray, np.ndarray]]) -> list[Pack]:
        rows = self.rows.__getitems__(np.concatenate([items for items, _ in packs]).tolist())  # one vectorised read
        out, at = [], 0
        for items, seqs in packs:
            out.append(Pack(rows[at:at + len(items)], seqs))
            at += len(items)
        return out


def loader(rows: ShardDataset, collate, batch_size: int, rank: int, world: int, seed: int) -> DataLoader:
    """Batches of `batch_size` packs of the phase's rows (pairs in phase 2), max_seq_len tokens a
    sequence. Call `loader.sampler.set_epoch(epoch)` every epoch: it re-draws the plan."""
    lengths = np.stack([rows.lengths(column) for column in TOKEN_COLUMNS[rows.phase]], axis=1)
    sampler = PackSampler(lengths, rows.max_seq_len, rank, world, seed)
    # Its own generator, as runtime.loader: without one a DataLoader draws from the global RNG at every
    # epoch's start, which a resumed run reaches at another moment (its dropout would differ).
    return DataLoader(PackedRows(rows), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


@dataclass
class PackedCollator:
    """Packs -> a packed batch (module docstring). `columns`: the token column of each part (phase 1:
    input_ids; pairs: chosen_input_ids, rejected_input_ids); `pad_to`: a fixed width instead of the
    longest sequence's."""

    pad_id: int
    columns: tuple[str, ...]
    pad_to: int | None = None

    def __call__(self, packs: list[Pack]) -> dict[str, torch.Tensor]:
        parts, count = len(self.columns), len(packs)
        items = sum(len(pack.rows) for pack in packs)
        seq, start, length, prompt = (np.zeros(items * parts, np.int64) for _ in range(4))
        tokens: list[np.ndarray] = [np.zeros(0, np.int64)] * (items * parts)
        fill = np.zeros(count * parts, np.int64)  # tokens placed so far in each sequence
        first = 0  # number of the pack's first item
        for p, pack in enumerate(packs):
            for k, row in enumerate(pack.rows):
                for j, column in enumerate(self.columns):
                    r, s = j * items + first + k, int(pack.seqs[k, j]) * count + p
                    tokens[r] = row[column]
                    seq[r], start[r], length[r] = s, fill[s], len(row[column])
                    prompt[r] = min(int(row["prompt_len"]), len(row[column]))  # a truncated row may be all prompt
                    fill[s] += len(row[column])
            first += len(pack.rows)
        width = self.pad_to or int(fill.max())
        ids = np.full((count * parts, width), self.pad_id, np.int64)
        # Padding at a sequence's end is a run of its own: positions from 0, so no row's last position
        # runs on into it (which would make transformers read row and padding as one sequence).
        positions = np.arange(width)[None, :] - fill[:, None]
        segment = np.full((count * parts, width), -1, np.int64)
        for r in range(items * parts):
            span = slice(start[r], start[r] + length[r])
            ids[seq[r], span] = tokens[r]
            positions[seq[r], span] = np.arange(length[r])
            segment[seq[r], span] = r
        batch = {"input_ids": ids, "position_ids": positions, "segment": segment, "row_seq": seq, "row_start": start,
                 "row_len": length, "prompt_len": prompt}
        items = [row for pack in packs for row in pack.rows]  # item k of the batch, as rows k and n + k are numbered
        return {**{k: torch.from_numpy(v) for k, v in batch.items()}, **pair_extras(items)}


@dataclass
class PackedSFTCollator:
    """Phase 1's packed batch, plus labels: -100 on padding, on each row's first token (so no row is
    trained to predict the next row's start) and on the tokens `loss` leaves out (collate.trained_tokens);
    so a row's targets are exactly those it has unpacked (SFTCollator)."""

    pad_id: int
    pad_to: int | None = None
    loss: str = "full"

    def __call__(self, packs: list[Pack]) -> dict[str, torch.Tensor]:
        batch = PackedCollator(self.pad_id, TOKEN_COLUMNS[1], self.pad_to)(packs)
        labels = batch["input_ids"].masked_fill(batch["segment"] < 0, IGNORE_INDEX)
        rows = [row for pack in packs for row in pack.rows]  # row r of the batch (one part per row)
        for row, seq, start in zip(rows, batch["row_seq"].tolist(), batch["row_start"].tolist()):
            skipped = ~trained_tokens(row, self.loss)
            skipped[0] = True
            labels[seq, start : start + len(skipped)][torch.from_numpy(skipped)] = IGNORE_INDEX
        batch["labels"] = labels
        return batch


def attention_of(model) -> str:
    """The attention kernel a model (or a DeepSpeed engine's model) runs packed batches with; a family that
    cannot take them is refused in one line (packed steps ask this first, before any packed forward)."""
    config = getattr(model, "module", model).config
    if not takes_block_mask(config):
        raise SystemExit(f"trainer: --packing cannot run {config.model_type} models: their ALiBi attention builds its bias from a "
                         "2-D padding mask and cannot take the packed rows' block mask; train without --packing")
    return config._attn_implementation


def takes_block_mask(config) -> bool:
    """Whether a model family runs the block-diagonal mask of masked_inputs. Those whose ALiBi bias is built
    from a 2-D padding mask do not (transformers' Bloom, and Falcon with alibi=True: a traceback); checked
    exact, packed against alone: gpt2, llama, qwen2, mistral, gemma, gemma2, phi3, gpt_neox, opt, falcon,
    mpt (its ALiBi is relative: tests/trainer/test_packing.py)."""
    return not (config.model_type == "bloom" or (config.model_type == "falcon" and getattr(config, "alibi", False)))


def varlen_kernel(packing: bool, dtype: str) -> str | None:
    """The attention to build the model with: flash attention's variable-length kernel for packed
    batches on a GPU where flash-attn is installed (it needs bf16 or fp16), else the model's default."""
    usable = packing and dtype in ("bf16", "fp16") and torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    return "flash_attention_2" if usable else None


def model_inputs(batch: dict, attention: str) -> dict[str, torch.Tensor | None]:
    """input_ids, position_ids and attention_mask for a model with this attention kernel."""
    if attention in VARLEN:
        return varlen_inputs(batch)
    if attention in MASKED:
        return masked_inputs(batch, additive=attention == "eager")
    raise SystemExit(f"trainer: --packing runs on {', '.join(MASKED + VARLEN)} attention; this model uses {attention!r}")


def masked_inputs(batch: dict, additive: bool) -> dict[str, torch.Tensor]:
    """[S, W] with a [S, 1, W, W] block-diagonal causal mask: a token sees the earlier tokens of its own
    row (padding sees padding). Bool for SDPA; `additive` (0 or the float minimum) for eager attention,
    which adds the mask to its scores. Works for every model family that takes a 4-D mask and
    position ids (takes_block_mask: tests/trainer/test_packing.py)."""
    segment = batch["segment"]
    width = segment.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segment.device).tril()
    allowed = ((segment[:, :, None] == segment[:, None, :]) & causal).unsqueeze(1)
    mask = torch.zeros(allowed.shape, device=segment.device).masked_fill(~allowed, torch.finfo(torch.float32).min) if additive else allowed
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "attention_mask": mask}


def varlen_inputs(batch: dict) -> dict[str, torch.Tensor | None]:
    """One flattened row [1, S * W] with no mask: transformers finds the rows where the position ids
    restart and runs flash attention's variable-length kernel on them (SDPA reads them the same way,
    which is how it is checked on the CPU). Call the model with use_cache=False: with a cache,
    transformers does not look for packed rows. Models that build their own mask when given none
    (OPT) cannot be packed this way."""
    return {"input_ids": batch["input_ids"].reshape(1, -1), "position_ids": batch["position_ids"].reshape(1, -1), "attention_mask": None}


def last_tokens(batch: dict) -> torch.Tensor:
    """Each row's last token as an index into the flattened [S * W] batch (either input layout)."""
    width = batch["input_ids"].shape[1]
    return batch["row_seq"] * width + batch["row_start"] + batch["row_len"] - 1


def real_tokens(batch: dict) -> int:
    """Tokens of the batch that are not padding."""
    return int((batch["segment"] >= 0).sum())
