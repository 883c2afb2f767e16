"""`dataprep stats DIR`: what padding costs the training phases of a prepared output, batched as the
trainer batches them: unpacked (rows in a seeded random order, each batch padded to its longest row;
pairs as chosen and rejected rows together) and packed (`--packing`: the plan of dataprep.packing, each
batch of packs padded to its longest sequence). Reads token lengths only: no token bytes, no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dataprep import report
from dataprep.errors import DataprepError
from dataprep.format import TOKEN_COLUMNS, Manifest, open_shards, token_lengths
from dataprep.packing import padding_share, plan

PACKABLE = (1, 2)  # the phases the trainer packs (phase 2: pairs, as DPO)


@dataclass(frozen=True)
class Padding:
    """One phase and side's padding share (0-1) per batch size, unpacked and packed."""

    phase: int
    side: str
    items: int  # rows (phase 1) or pairs (phase 2)
    tokens: int
    capacity: int  # tokens per packed sequence
    packs: int
    unpacked: dict[int, float]  # batch size in rows or pairs -> padding share
    packed: dict[int, float]  # batch size in packs -> padding share


def item_lengths(out: Path | str, phase: int, side: str) -> np.ndarray:
    """Tokens per item and part, [items, parts], from the shards' offsets."""
    shards = open_shards(out, phase, side, hashed=False)
    return np.stack([np.concatenate([token_lengths(t.column(c)) for t in shards.tables]) for c in TOKEN_COLUMNS[phase]], axis=1)


def padding(out: Path | str, phase: int, side: str, batch_sizes: list[int], capacity: int | None = None, seed: int = 1234) -> Padding:
    """The padding share of one phase and side at each batch size; packs of `capacity` tokens (default:
    the output's max_seq_len), planned for epoch 0 of a run with this seed."""
    lengths = item_lengths(out, phase, side)
    capacity = capacity or Manifest.read(out).max_seq_len
    longest = int(lengths.max()) if lengths.size else 0
    if longest > capacity:
        raise DataprepError(f"phase {phase} {side} has rows of {longest} tokens: packed sequences must hold at least that many (--max-seq-len)")
    packs = plan(lengths, capacity, seed, epoch=0)
    shuffled = lengths[np.random.default_rng(seed).permutation(len(lengths))]
    fills = packs.fills(lengths)
    return Padding(phase, side, len(lengths), int(lengths.sum()), capacity, len(packs),
                   unpacked={b: padding_share(shuffled, b) for b in batch_sizes}, packed={b: padding_share(fills, b) for b in batch_sizes})


def stats(out: Path | str, phases: list[int] | None, side: str, batch_sizes: list[int], capacity: int | None, seed: int) -> list[Padding]:
    """Padding of the given phases (default: those of 1 and 2 the output has) on one side."""
    if any(b < 1 for b in batch_sizes):
        raise DataprepError(f"--batch-size {min(batch_sizes)}: batch sizes must be at least 1")
    if capacity is not None and capacity < 1:
        raise DataprepError(f"--max-seq-len {capacity}: must be at least 1")
    manifest = Manifest.read(out)
    built = [p for p in PACKABLE if manifest.part(p, side) is not None]
    chosen = phases or built
    if not chosen:
        raise DataprepError(f"{out}: its manifest lists no phase 1 or 2 {side} shards")
    return [padding(out, p, side, batch_sizes, capacity, seed) for p in chosen]


def render(found: list[Padding]) -> str:
    blocks = []
    for f in found:
        unit, pack = ("rows", f"sequences of at most {f.capacity} tokens") if f.phase == 1 else \
            ("pairs", f"packs of two sequences of at most {f.capacity} tokens")
        head = (f"phase {f.phase} {f.side}: {f.items:,} {unit}, {f.tokens:,} tokens; packed into {f.packs:,} {pack} "
                f"({f.items / max(f.packs, 1):.1f} {unit} a pack)")
        rows = [[b, f"{f.unpacked[b]:.1%}", f"{f.packed[b]:.1%}"] for b in f.unpacked]
        blocks.append(head + "\n" + report.table(rows, [f"batch ({unit} | packs)", "padding unpacked", "padding packed"]))
    return "\n\n".join(blocks)


def as_json(found: list[Padding]) -> list[dict]:
    return [asdict(f) for f in found]
