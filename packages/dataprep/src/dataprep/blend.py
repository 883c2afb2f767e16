"""Blending the datasets of one phase part: which rows of the blend staging file go to the shards, in
which order.

The staging file holds each `--data` dataset's kept rows (in DeepSpeed-Chat's split order), one
dataset after the other, then, in phase 1, each `--sft-only-data` dataset's. The order is:
  * unweighted: DeepSpeed-Chat's blend, one `shuffle_index(seed, total)` over the concatenation
    (a single dataset is taken as it is, as DeepSpeed-Chat does);
  * weighted (`--data a:0.7 b:0.3`): the blend has as many rows N as the unweighted one; dataset i
    gets quota_i = w_i * N rounded by largest remainder (ties to the earlier dataset), so the quotas
    sum to N exactly. A dataset over its quota gives a seeded sample of its rows (the others are
    dropped as `over_quota`); one under it gives all its rows, as many whole times as fit, plus a
    seeded sample for the remainder (`repeated`). Samples keep the dataset's order, so weights equal
    to the datasets' shares give exactly the unweighted blend. Then the same seeded shuffle;
  * SFT-only data (phase 1): appended after that blend and shuffled again with the seed, as
    DeepSpeed-Chat's `sft_only_data_path` is.

Part of stage 5 of prepare (write.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from dataprep.errors import DataprepError
from dataprep.split import shuffle_index

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
SIDE_WORD = {"train": 0, "eval": 1}


def split_weight(spec: str) -> tuple[str, Fraction | None]:
    """'path:0.7' -> ('path', 0.7); a suffix that is not a number is part of the name ('hub/id:rev')."""
    name, sep, suffix = spec.rpartition(":")
    if not sep or not name or not _NUMBER.fullmatch(suffix):
        return spec, None
    return name, Fraction(suffix)


def parse_data(specs: list[str]) -> tuple[list[str], list[Fraction] | None]:
    """--data arguments -> (dataset names or paths, weights or None); all or none must be weighted."""
    parsed = [split_weight(s) for s in specs]
    weights = [w for _, w in parsed]
    if all(w is None for w in weights):
        return [n for n, _ in parsed], None
    if any(w is None for w in weights):
        bare = next(s for s, w in zip(specs, weights) if w is None)
        raise DataprepError(f"--data {bare}: no weight, but other datasets have one; weight all of them (NAME:WEIGHT) or none")
    bad = next((s for s, w in zip(specs, weights) if w <= 0), None)
    if bad is not None:
        raise DataprepError(f"--data {bad}: a weight must be greater than 0 (leave a dataset out to drop it)")
    return [n for n, _ in parsed], weights


def check_sft_only(specs: list[str]) -> None:
    weighted = next((s for s in specs if split_weight(s)[1] is not None), None)
    if weighted is not None:
        raise DataprepError(f"--sft-only-data {weighted}: weights apply to --data only; SFT-only datasets are added whole to phase 1")


def quotas(weights: list[Fraction], total: int) -> list[int]:
    """Largest-remainder rounding of weights (normalised) * total: sums to `total` exactly; equal
    remainders go to the earlier dataset. Exact rational arithmetic, so no float ties."""
    shares = [w * total / sum(weights) for w in weights]
    floors = [int(s) for s in shares]  # shares are >= 0, so int() is floor
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in by_remainder[: total - sum(floors)]:
        floors[i] += 1
    return floors


@dataclass
class Mix:
    """How one phase part is blended: `main` --data datasets first (with weights or not), then the rest
    of the pools, SFT-only ones (phase 1 only)."""

    weights: list[Fraction] | None
    main: int


@dataclass
class Plan:
    order: np.ndarray  # rows of the staging file, in shard order (a row may repeat)
    records: list[dict] | None  # per --data dataset, when weighted: weight, available, quota, taken, repeated, left_out
    left_out: list[np.ndarray] | None  # per --data dataset, when weighted: its rows (0-based within it) not taken


def plan(seed: int, phase: int, side: str, names: list[str], kept: list[int], mix: Mix) -> Plan:
    """The shard order for a staging file holding `kept[i]` rows of pool `names[i]`, one after the other."""
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    main_rows = int(offsets[mix.main])
    records = left_out = None
    if mix.weights is None:
        order = shuffle_index(seed, main_rows).astype(np.int64) if mix.main > 1 else np.arange(main_rows, dtype=np.int64)
    else:
        picks, records, left_out = [], [], []
        for i, quota in enumerate(quotas(mix.weights, main_rows)):
            if quota and not kept[i]:
                raise DataprepError(
                    f"phase {phase} {side}: {names[i]} has no rows left after drops but its weight asks for {quota}; "
                    "lower its weight, leave it out, or change the split"
                )
            pick, left, record = _take(_rng_words(seed, phase, side, i), kept[i], quota)
            picks.append(offsets[i] + pick)
            left_out.append(left)
            records.append({"weight": float(mix.weights[i] / sum(mix.weights)), "weight_given": float(mix.weights[i]), **record})
        order = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        if mix.main > 1:
            order = order[shuffle_index(seed, len(order))]
    if len(kept) > mix.main:  # SFT-only data: appended after the blend, then DeepSpeed-Chat reshuffles with the seed
        order = np.concatenate([order, np.arange(main_rows, int(offsets[-1]), dtype=np.int64)])
        order = order[shuffle_index(seed, len(order))]
    return Plan(order, records, left_out)


def _rng_words(seed: int, phase: int, side: str, dataset: int) -> list[int]:
    """A separate, reproducible sample stream per phase, side and dataset (legacy RandomState: its
    streams never change across numpy versions, unlike Generator's)."""
    return [seed, phase, SIDE_WORD[side], dataset]


def _take(words: list[int], available: int, quota: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows taken, in the dataset's order with whole passes first; rows left out; counts)."""
    passes, remainder = divmod(quota, available) if available else (0, 0)
    perm = np.arange(available, dtype=np.int64)
    np.random.RandomState(np.array(words, dtype=np.uint32)).shuffle(perm)
    sample = np.sort(perm[:remainder])
    taken = np.concatenate([np.tile(np.arange(available, dtype=np.int64), passes), sample])
    left = np.sort(perm[remainder:]) if passes == 0 else np.zeros(0, np.int64)
    record = {"available": available, "quota": quota, "taken": int(min(quota, available)),
              "repeated": int(max(quota - available, 0)), "left_out": int(len(left))}
    return taken, left, record
