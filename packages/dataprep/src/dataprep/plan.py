"""Stage 3 of prepare, plan the split: which rows of each dataset go to which side and phase, in which
order. One implementation serves both `--split-by` modes; the result is a typed `SplitPlan`.

The unit the split deals out is a row (DeepSpeed-Chat) or, with `--split-by prompt`, a group of rows
sharing a prompt (or an SHP post: pool.group_keys). Per dataset:
  1. each unit's side comes from its files; a group found on both sides goes to eval (HH repeats some
     prompts in its train and test files: the test files are the held-out set, and the train rows
     that share an eval prompt are exactly the leak; they are counted as `moved_to_eval`). A dataset
     with a single side is carved 9:1 into train and eval first (split.CARVE), as DeepSpeed-Chat does;
  2. each side's units are dealt into phases by DeepSpeed-Chat's split (split.Split.indices);
  3. a phase part lists its rows by their unit's place in the split's permutation, then in file order.
     With one row per unit that is DeepSpeed-Chat's order exactly.
With `--split-by prompt`, a group already placed by an earlier dataset (in --data order, then
--sft-only-data) is pinned: its rows follow that side and phase, after the part's other rows.
A ranking dataset (several pairs per prompt) is split by prompt group whatever --split-by says, so
that no prompt's pairs leak across phases or sides; under `--split-by row` it pins nothing for others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataprep.errors import DataprepError
from dataprep.format import PHASES, SIDE_CODE, SIDES
from dataprep.pool import Pool
from dataprep.split import CARVE, Split

_TRAIN, _EVAL = SIDE_CODE["train"], SIDE_CODE["eval"]


@dataclass(frozen=True)
class Carve:
    """The 9:1 train/eval carve of a dataset that has one side."""

    side: str  # the side its files had
    train: int  # units carved to each side
    eval: int
    unit: str  # "row" | "group"

    def record(self) -> dict:
        return {"from": self.side, "split": CARVE.text, "train": self.train, "eval": self.eval,
                **({"unit": "group"} if self.unit == "group" else {})}


@dataclass(frozen=True)
class Groups:
    """`--split-by prompt` only: how the groups of a dataset were placed."""

    pinned_rows: int  # rows whose group an earlier dataset placed
    moved_to_eval: int  # train-file rows whose group is also on the eval side
    moved_to_train: int
    per_phase: dict[str, list[int]]  # side -> groups dealt to phase 1, 2, 3 (pinned ones excluded)

    def record(self) -> dict:
        return {"split_by": "prompt", "pinned_rows": self.pinned_rows, "moved_to_eval": self.moved_to_eval,
                "moved_to_train": self.moved_to_train, **self.per_phase}


@dataclass(frozen=True)
class DatasetSplit:
    """One dataset's split: per row its side and phase, and per side the rows of each phase in shard order."""

    name: str
    side_of: np.ndarray  # int8 per row: SIDE_CODE
    phase_of: np.ndarray  # int8 per row: 1, 2 or 3
    parts: dict[str, list[np.ndarray]]  # side -> [phase 1 rows, phase 2 rows, phase 3 rows]
    used: tuple[int, ...]  # the phases this dataset feeds
    carve: Carve | None
    groups: Groups | None

    def rows(self, side: str) -> list[int]:
        """Rows per phase on one side (unused phases included)."""
        return [int(len(rows)) for rows in self.parts[side]]

    def unused(self, side: str) -> int:
        """Rows of one side in phases this dataset does not feed."""
        return int(sum(len(rows) for p, rows in zip(PHASES, self.parts[side]) if p not in self.used))


@dataclass(frozen=True)
class SplitPlan:
    split_by: str  # "row" | "prompt"
    datasets: list[DatasetSplit]  # in the pools' order


class Pins:
    """`--split-by prompt` across datasets: where earlier datasets put each group, key -> (side, phase)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.uint64)  # sorted, unique
        self.side = np.zeros(0, np.int8)
        self.phase = np.zeros(0, np.int8)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(side code, phase) per key; -1 where the key is not pinned."""
        side, phase = np.full(len(keys), -1, np.int8), np.full(len(keys), -1, np.int8)
        if len(self.keys):
            at = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
            found = self.keys[at] == keys
            side[found], phase[found] = self.side[at[found]], self.phase[at[found]]
        return side, phase

    def add(self, keys: np.ndarray, side: np.ndarray, phase: np.ndarray) -> None:
        """Pin these rows' groups; a group pinned before keeps its place (all its rows agree anyway)."""
        keys, first = np.unique(np.concatenate([self.keys, keys]), return_index=True)
        self.side = np.concatenate([self.side, side.astype(np.int8)])[first]
        self.phase = np.concatenate([self.phase, phase.astype(np.int8)])[first]
        self.keys = keys


def plan(pools: list[Pool], rules: list[tuple[Split, tuple[int, ...]]], seed: int, split_by: str) -> SplitPlan:
    """Split every pool; `rules[i]` is pool i's (split, phases it feeds)."""
    pins = Pins() if split_by == "prompt" else None
    # A ranking under --split-by row gets pins of its own: its rows go by prompt group, and the datasets
    # after it are not pinned to where its prompts went.
    splits = [split_rows(pool.name, pool.keys, pool.side_rows(), split, used, seed, Pins() if pins is None and pool.ranked else pins)
              for pool, (split, used) in zip(pools, rules)]
    return SplitPlan(split_by, splits)


def split_rows(name: str, keys: np.ndarray, file_sides: dict[str, np.ndarray], split: Split, used: tuple[int, ...], seed: int,
               pins: Pins | None) -> DatasetSplit:
    """Split one dataset. `file_sides` maps each side that has rows to its rows; `pins` is None for
    `--split-by row` (every row its own unit) and the groups placed so far for `--split-by prompt`."""
    by_group = pins is not None
    unit = _first_occurrence_codes(keys) if by_group else np.arange(len(keys), dtype=np.int64)
    units = int(unit.max()) + 1 if len(unit) else 0
    pin_side, pin_phase = pins.lookup(keys) if by_group else (np.full(len(keys), -1, np.int8),) * 2
    held = pin_side >= 0  # rows whose group an earlier dataset placed
    pinned = np.zeros(units, bool)
    pinned[unit[held]] = True

    unit_side, carve = np.zeros(units, np.int8), None
    if len(file_sides) == 2:
        unit_side[unit[file_sides["eval"]]] = _EVAL  # on both sides: eval wins
        order = {side: np.flatnonzero((unit_side == SIDE_CODE[side]) & ~pinned) for side in SIDES}
    else:
        (only, _), = file_sides.items()
        free = np.flatnonzero(~pinned)
        train, evals = CARVE.indices(seed, len(free))
        word = "prompt groups" if by_group else "rows"
        if len(free) and (len(train) == 0 or len(evals) == 0):
            raise DataprepError(f"{name}: only {len(free)} {only} {word} and no other side; the {CARVE.text} train/eval carve "
                                "leaves one side empty; add rows or a *test* file")
        unit_side[free[evals]] = _EVAL
        carve = Carve(only, int(len(train)), int(len(evals)), "group" if by_group else "row")
        # Rows keep the carve's order, as DeepSpeed-Chat's train/eval subsets do; groups are dealt out in
        # the order of their first row, as --split-by prompt always has.
        order = {"train": free[train], "eval": free[evals]}
        if by_group:
            order = {side: np.sort(units_) for side, units_ in order.items()}
    unit_side[unit[held]] = pin_side[held]
    unit_phase = np.zeros(units, np.int8)
    unit_phase[unit[held]] = pin_phase[held]
    rank = np.full(units, units, np.int64)  # a unit's place in its side's split permutation; pinned ones last

    side_of, phase_of = unit_side[unit], np.zeros(len(keys), np.int8)
    parts, per_phase = {}, {}
    for side in SIDES:
        free = order[side]
        for phase, ix in zip(PHASES, split.indices(seed, len(free))):
            unit_phase[free[ix]] = phase
            rank[free[ix]] = np.arange(len(ix))
        per_phase[side] = [int(np.sum(unit_phase[free] == p)) for p in PHASES]
        rows = np.flatnonzero(side_of == SIDE_CODE[side])
        phase_of[rows] = unit_phase[unit[rows]]
        parts[side] = [_ordered(rows[phase_of[rows] == p], unit, rank) for p in PHASES]
        for p, part in zip(PHASES, parts[side]):
            if p in used and len(part) == 0:
                how = " --split-by prompt" if by_group else ""
                raise DataprepError(f"{name}: --split {split.text}{how} leaves phase {p} with no {side} rows "
                                    f"({len(free)} {'prompt groups' if by_group else 'rows'} to split); "
                                    "add rows or change the split (0 for a phase you do not want)")
    groups = None
    if by_group:
        pins.add(keys, side_of, phase_of)
        moved = {"train": 0, "eval": 0}
        if len(file_sides) == 2:
            moved = {side: int(np.sum(side_of[file_sides[side]] != SIDE_CODE[side])) for side in SIDES}
        groups = Groups(int(np.sum(held)), moved["train"], moved["eval"], per_phase)
    return DatasetSplit(name, side_of, phase_of, parts, used, carve, groups)


def _first_occurrence_codes(keys: np.ndarray) -> np.ndarray:
    """Group number per row, groups numbered in the order of their first row."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    renumber = np.empty(len(first), np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(len(first))
    return renumber[inverse.reshape(-1)]


def _ordered(rows: np.ndarray, unit: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Rows by their unit's rank in the split, then in file order."""
    return rows[np.lexsort((rows, rank[unit[rows]]))]


def prompt_overlap(pools: list[Pool], plan_: SplitPlan, wanted: tuple[int, ...]) -> dict:
    """Distinct prompts (groups) shared between phases (either side) and between train and eval (any
    phase), over the rows each built part receives after parsing and screening (before phase-level
    drops and quotas): zero with --split-by prompt, DeepSpeed-Chat's leak without."""
    keys, side, phase = [], [], []
    for pool, split in zip(pools, plan_.datasets):
        rows = pool.usable & np.isin(split.phase_of, split.used)
        keys.append(pool.keys[rows])
        side.append(split.side_of[rows])
        phase.append(split.phase_of[rows])
    keys_, side_, phase_ = (np.concatenate(a) for a in (keys, side, phase))
    in_phase = {p: np.unique(keys_[phase_ == p]) for p in wanted}
    overlap = {f"phase{a}_phase{b}": int(len(np.intersect1d(in_phase[a], in_phase[b], assume_unique=True)))
               for i, a in enumerate(wanted) for b in wanted[i + 1 :]}
    overlap["train_eval"] = int(len(np.intersect1d(np.unique(keys_[side_ == _TRAIN]), np.unique(keys_[side_ == _EVAL]), assume_unique=True)))
    return {"split_by": plan_.split_by, **overlap}
