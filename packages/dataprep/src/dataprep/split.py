"""DeepSpeed-Chat's `data_split`, index for index, with its silent failure modes turned into errors.

Parity (same seed, split string and size give the same indices as DeepSpeed-Chat's
`get_raw_dataset_split_index`):
  * the permutation is `numpy.random.RandomState(seed).shuffle(arange(size))` with the same dtype rule;
  * each part is `round(weight * size)` with Python's half-to-even `round`, rounded independently;
  * the whole rounding error is taken off part 0.
Fixes: a malformed split string, a negative boundary (DeepSpeed-Chat then slices from the end and
silently overlaps phases) and a wanted part that comes out empty all raise `DataprepError`.

Stage 3 of prepare (plan.py) applies it; a `Split` is parsed once from its string.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataprep.errors import DataprepError


@dataclass(frozen=True)
class Split:
    """A parsed split string: '6,2,2' -> weights (0.6, 0.2, 0.2)."""

    text: str
    weights: tuple[float, ...]  # normalised to sum 1

    @classmethod
    def parse(cls, text: str, parts: int | None = 3) -> "Split":
        """Check and normalise `text`; `parts` is how many numbers it must hold (None: any)."""
        try:
            weights = [float(x) for x in text.split(",")]
        except ValueError:
            raise DataprepError(f"--split {text!r}: expected comma-separated numbers such as 6,2,2") from None
        if parts is not None and len(weights) != parts:
            raise DataprepError(f"--split {text!r}: expected {parts} numbers (phase 1, 2, 3), got {len(weights)}")
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise DataprepError(f"--split {text!r}: weights must be non-negative and not all zero")
        total = sum(weights)
        return cls(text, tuple(w / total for w in weights))

    def boundaries(self, size: int) -> list[int]:
        """Boundaries b with part i = perm[b[i]:b[i+1]], exactly as DeepSpeed-Chat computes them."""
        bounds = [0]
        for w in self.weights:
            bounds.append(bounds[-1] + int(round(w * float(size))))
        diff = bounds[-1] - size
        for i in range(1, len(bounds)):
            bounds[i] -= diff
        if any(b1 < b0 for b0, b1 in zip(bounds, bounds[1:])):
            raise DataprepError(
                f"--split {self.text!r} on {size} rows gives boundaries {bounds}: a negative part, which DeepSpeed-Chat "
                "silently turns into overlapping phases; give part 1 a non-zero weight or use more rows"
            )
        return bounds

    def indices(self, seed: int, size: int) -> list[np.ndarray]:
        """The indices of each part, in DeepSpeed-Chat's order (the permutation's order)."""
        bounds = self.boundaries(size)
        perm = shuffle_index(seed, size)
        return [perm[b0:b1] for b0, b1 in zip(bounds, bounds[1:])]


def shuffle_index(seed: int, size: int) -> np.ndarray:
    """DeepSpeed-Chat's `get_shuffle_idx`: the permutation does not depend on the dtype."""
    dtype = np.uint32 if size < np.iinfo(np.uint32).max - 1 else np.int64
    index = np.arange(size, dtype=dtype)
    np.random.RandomState(seed).shuffle(index)
    return index


# A dataset with a single side (train only, say) is carved 9:1 into train and eval first, as
# DeepSpeed-Chat does for its train-only datasets (its split_name "train_eval").
CARVE = Split.parse("9,1", parts=2)
# DeepSpeed-Chat's split for sft_only_data_path: all of each side to phase 1.
SFT_ONLY = Split.parse("10,0,0")
