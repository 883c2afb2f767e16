"""DeepSpeed-Chat's `data_split`, index for index, with its silent failure modes turned into errors.

Parity (same seed, split string and size give the same indices as DeepSpeed-Chat's
`get_raw_dataset_split_index`):
  * the permutation is `numpy.random.RandomState(seed).shuffle(arange(size))` with the same dtype rule;
  * each part is `round(weight * size)` with Python's half-to-even `round`, rounded independently;
  * the whole rounding error is taken off part 0.
Fixes: a malformed split string, a negative boundary (DeepSpeed-Chat then slices from the end and
silently overlaps phases) and a wanted part that comes out empty all raise `DataprepError`.
"""

from __future__ import annotations

import numpy as np

from dataprep.errors import DataprepError

# A dataset with a single side (train only, say) is carved 9:1 into train and eval first, as
# DeepSpeed-Chat does for its train-only datasets (its split_name "train_eval").
CARVE_SPLIT = "9,1"


def parse_split(spec: str, parts: int | None = 3) -> list[float]:
    """'6,2,2' -> normalised weights [0.6, 0.2, 0.2]."""
    try:
        weights = [float(x) for x in spec.split(",")]
    except ValueError:
        raise DataprepError(f"--split {spec!r}: expected comma-separated numbers such as 6,2,2") from None
    if parts is not None and len(weights) != parts:
        raise DataprepError(f"--split {spec!r}: expected {parts} numbers (phase 1, 2, 3), got {len(weights)}")
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise DataprepError(f"--split {spec!r}: weights must be non-negative and not all zero")
    total = sum(weights)
    return [w / total for w in weights]


def shuffle_index(seed: int, size: int) -> np.ndarray:
    """DeepSpeed-Chat's `get_shuffle_idx`: the permutation does not depend on the dtype."""
    dtype = np.uint32 if size < np.iinfo(np.uint32).max - 1 else np.int64
    index = np.arange(size, dtype=dtype)
    np.random.RandomState(seed).shuffle(index)
    return index


def split_boundaries(spec: str, size: int, parts: int | None = 3) -> list[int]:
    """Boundaries b with part i = perm[b[i]:b[i+1]], exactly as DeepSpeed-Chat computes them."""
    weights = parse_split(spec, parts)
    bounds = [0]
    for w in weights:
        bounds.append(bounds[-1] + int(round(w * float(size))))
    diff = bounds[-1] - size
    for i in range(1, len(bounds)):
        bounds[i] -= diff
    if any(b1 < b0 for b0, b1 in zip(bounds, bounds[1:])):
        raise DataprepError(
            f"--split {spec!r} on {size} rows gives boundaries {bounds}: a negative part, which DeepSpeed-Chat "
            "silently turns into overlapping phases; give part 1 a non-zero weight or use more rows"
        )
    return bounds


def split_indices(seed: int, spec: str, size: int, parts: int | None = 3) -> list[np.ndarray]:
    """The row indices of each part, in DeepSpeed-Chat's order (the permutation's order)."""
    bounds = split_boundaries(spec, size, parts)
    perm = shuffle_index(seed, size)
    return [perm[b0:b1] for b0, b1 in zip(bounds, bounds[1:])]
