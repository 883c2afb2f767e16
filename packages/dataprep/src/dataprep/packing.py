"""Packing plans: which rows share a sequence, decided from token lengths alone (numpy, no token bytes).

Packing puts several rows into one sequence of at most `capacity` tokens, so a batch spends its slots
on tokens rather than padding. The trainer packs phases 1 and 2 with `--packing`, and `dataprep stats`
uses the same plan to report the padding it saves. A public module, like `dataprep.format`.

An *item* is what must stay together, in *parts*: a phase-1 row (one part), or a phase-2 pair (two
parts: chosen, rejected). A pack holds as many sequences as an item has parts, each of at most
`capacity` tokens, and every part of each of its items goes into one of them: a pair's two rows
always travel together, in one pack and so in one batch. Where a pair's rows go is recorded
(`PackPlan.seqs`): a pair whose chosen row fills a sequence on its own can share the other sequence
with other pairs' rows, which keeps the padding of pairs near that of single rows.

`plan` is deterministic in (lengths, capacity, seed, epoch) and covers every item exactly once:

  1. the items are shuffled by a generator seeded with (seed, epoch), so every epoch packs differently;
  2. the shuffled items are cut into windows of `window` items, and each window is packed by best-fit
     decreasing: longest item first, each into the open pack it leaves with the least room (ties: the
     oldest pack; within the pack, the placement that leaves its sequences most even), else into a new
     pack; a window bounds the work and keeps the order random at large scale;
  3. the packs of all windows are shuffled with the same generator.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import numpy as np

# Items per best-fit window: the padding of a window's last, part-filled packs is spread over this
# many items (docs/benchmarks.md measures padding and planning time against it).
WINDOW = 1024


@dataclass(frozen=True)
class PackPlan:
    """One epoch's packs, in training order. Pack p holds the items `items[bounds[p]:bounds[p + 1]]`
    (indices into the lengths it was planned from), longest first; part j of the item at
    `items[k]` goes into sequence `seqs[k, j]` of its pack, after the parts placed there before it."""

    items: np.ndarray  # int64 [n]: every item exactly once
    bounds: np.ndarray  # int64 [packs + 1]: offsets into `items`
    seqs: np.ndarray  # int8 [n, parts]: the sequence of its pack that each part goes into

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def pack(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Pack p's item indices and where their parts go."""
        span = slice(self.bounds[p], self.bounds[p + 1])
        return self.items[span], self.seqs[span]

    def fills(self, lengths: np.ndarray) -> np.ndarray:
        """Tokens per pack and sequence, [packs, parts], for the `lengths` the plan was made from."""
        parts = _parts(lengths)
        fills = np.zeros((len(self), parts.shape[1]), np.int64)
        pack_of = np.repeat(np.arange(len(self)), np.diff(self.bounds))
        for j in range(parts.shape[1]):
            np.add.at(fills, (pack_of, self.seqs[:, j]), parts[self.items, j])
        return fills


def plan(lengths: np.ndarray, capacity: int, seed: int, epoch: int, window: int = WINDOW) -> PackPlan:
    """Packs of at most `capacity` tokens per sequence for one epoch. `lengths`: tokens per item,
    [items] (one part) or [items, parts]. A part longer than `capacity` is a ValueError."""
    parts = _parts(lengths)
    if parts.size and int(parts.max()) > capacity:
        worst = int(np.argmax(parts.max(axis=1)))
        raise ValueError(f"item {worst} has a part of {int(parts[worst].max())} tokens, more than the packs' capacity of {capacity}")
    if window < 1:
        raise ValueError(f"window {window}: must hold at least one item")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(parts))
    items: list[int] = []  # item indices, pack after pack (before the packs are shuffled)
    seqs: list[tuple[int, ...]] = []
    sizes: list[int] = []
    for start in range(0, len(order), window):
        window_items = order[start:start + window]
        for members, placements in _best_fit_decreasing(window_items, parts, capacity):
            items += window_items[members].tolist()
            seqs += placements
            sizes.append(len(members))
    # Shuffle the packs: gather each pack's span of `items` in the new order.
    size = np.asarray(sizes, np.int64)
    shuffled = rng.permutation(len(size))
    bounds = np.concatenate([[0], np.cumsum(size[shuffled])]).astype(np.int64)
    begin = (np.cumsum(size) - size)[shuffled]
    gather = np.repeat(begin - bounds[:-1], size[shuffled]) + np.arange(bounds[-1])
    return PackPlan(np.asarray(items, np.int64)[gather], bounds, np.asarray(seqs, np.int8).reshape(-1, parts.shape[1])[gather])


def _best_fit_decreasing(items: np.ndarray, parts: np.ndarray, capacity: int) -> list[tuple[list[int], list[tuple[int, ...]]]]:
    """Best-fit decreasing over `items`: per pack, its members (positions in `items`, longest first)
    and where each member's parts go."""
    width = parts.shape[1]
    placements = list(itertools.product(range(width), repeat=width))  # part j -> sequence placement[j]
    needs = parts[items].tolist()
    # Longest first (all parts together); a stable sort keeps the shuffled order among equals.
    order = np.argsort(-parts[items].sum(axis=1), kind="stable").tolist()
    free: list[list[int]] = []  # per pack: free tokens of each sequence
    members: list[list[int]] = []  # per pack: positions in `items`
    where: list[list[tuple[int, ...]]] = []  # per pack: each member's placement
    by_room: list[tuple[int, int]] = []  # (free tokens, pack) of the packs not yet full, ascending
    for i in order:
        need = needs[i]
        # Packs with less room than the item cannot take it; the first one from there that can is the best fit.
        at = bisect.bisect_left(by_room, (sum(need), -1))
        for k in range(at, len(by_room)):
            pack = by_room[k][1]
            placement = _placement(free[pack], need, placements)
            if placement is not None:
                del by_room[k]
                break
        else:
            pack = len(members)
            free.append([capacity] * width)
            members.append([])
            where.append([])
            placement = _placement(free[pack], need, placements)
        for part, seq in enumerate(placement):
            free[pack][seq] -= need[part]
        members[pack].append(i)
        where[pack].append(placement)
        room = sum(free[pack])
        if room:
            bisect.insort(by_room, (room, pack))
    return list(zip(members, where))


def _placement(free: list[int], need: list[int], placements: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """Where an item's parts go in a pack with `free` tokens per sequence: of the placements that fit,
    the one that leaves the sequences most even (the least room in its emptiest sequence); None when
    none fits."""
    if len(free) == 1:  # single rows: the common case, kept cheap
        return placements[0] if need[0] <= free[0] else None
    if max(need) > max(free):  # the longest part fits nowhere: most packs a pair is offered fail here
        return None
    best, best_room = None, None
    for placement in placements:
        left = list(free)
        for part, seq in enumerate(placement):
            left[seq] -= need[part]
        if min(left) >= 0 and (best_room is None or max(left) < best_room):
            best, best_room = placement, max(left)
    return best


def _parts(lengths: np.ndarray) -> np.ndarray:
    """Lengths as [items, parts] int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return lengths[:, None] if lengths.ndim == 1 else lengths


def padding_share(fills: np.ndarray, batch_size: int) -> float:
    """The share of token slots that are padding when sequences with these `fills` (tokens per item or
    pack, [n] or [n, sequences]) are batched `batch_size` at a time, in this order, every sequence of a
    batch padded to the batch's longest: what the trainer's collators do."""
    fills = _parts(fills)
    if not fills.size:
        return 0.0
    n, width = fills.shape
    starts = np.arange(0, n, batch_size)
    longest = np.maximum.reduceat(fills.max(axis=1), starts)
    rows = np.diff(np.append(starts, n))
    return 1.0 - int(fills.sum()) / (int((longest * rows).sum()) * width)
