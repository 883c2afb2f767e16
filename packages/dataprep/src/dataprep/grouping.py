"""Prompt groups: the 64-bit key of every row, `--split-by prompt`, and the prompt-overlap report.

A row's group is its canonical `group` (an SHP post, say) when the adapter sets one, else its prompt
text; a row dropped while parsing without a prompt is a group of its own. Keys are 64-bit blake2b
digests (one per row, a few bytes each): a collision between two of a million groups has a
probability of about 3e-8, and the split never depends on the key values, only on which keys are
equal, so the output does not change with the hash function.

`--split-by prompt` applies DeepSpeed-Chat's split (split.split_indices, and the 9,1 carve for
single-side datasets) to groups instead of rows, so every row of a group lands in the same side and
phase. Two rules make that hold across files and datasets:
  * a group found on both sides of a dataset (HH repeats some prompts in its train and test files)
    goes to the eval side: the test files are the held-out set, and the train rows that share an eval
    prompt are exactly the leak. Those rows are counted in the manifest (`groups.moved_to_eval`);
  * a group already placed by an earlier dataset (in --data order, then --sft-only-data) is "pinned":
    its rows follow that side and phase; the other groups are split as usual.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from dataprep.errors import DataprepError
from dataprep.phases import PHASES
from dataprep.split import CARVE_SPLIT, split_indices

_TRAIN, _EVAL = 0, 1


def row_keys(rows: pa.Table, source: str, first_row: int) -> np.ndarray:
    """uint64 group key per row of a CANONICAL table whose rows are `first_row`, ... of `source`."""
    digests = []
    for i, (group, prompt) in enumerate(zip(rows.column("group").to_pylist(), rows.column("prompt").to_pylist())):
        if group is not None:
            text, kind = group, b"group"
        elif prompt is not None:
            text, kind = prompt, b"prompt"
        else:  # no prompt to share: the row is its own group
            text, kind = f"{source}\0{first_row + i}", b"row"
        digests.append(hashlib.blake2b(text.encode(), digest_size=8, person=kind).digest())
    return np.frombuffer(b"".join(digests), dtype="<u8").copy() if digests else np.zeros(0, np.uint64)


class Pins:
    """Where earlier datasets put each group: key -> (side code, phase)."""

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


def split_groups(name: str, keys: np.ndarray, by_side: dict[str, np.ndarray], wanted: list[int], described: dict, opts,
                 pins: Pins) -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """`--split-by prompt` for one dataset: (side code per row, phase per row, side -> phase 1..3 row
    positions). Within a phase come the free groups in DeepSpeed-Chat's order (the split permutation
    over groups), each group's rows in file order, then the pinned rows in file order."""
    code = _first_occurrence_codes(keys)
    groups = int(code.max()) + 1 if len(code) else 0
    pin_side, pin_phase = pins.lookup(keys)
    pinned = np.zeros(groups, bool)
    pinned[code[pin_side >= 0]] = True
    group_side = _group_sides(name, code, by_side, pinned, described, opts)
    group_side[code[pin_side >= 0]] = pin_side[pin_side >= 0]
    group_phase = np.zeros(groups, np.int8)
    group_phase[code[pin_phase >= 0]] = pin_phase[pin_phase >= 0]
    rank = np.full(groups, groups, np.int64)  # pinned groups sort after the split ones
    side_of, phase_of, parts = group_side[code], np.zeros(len(keys), np.int8), {}
    described["groups"] = {"split_by": "prompt", "pinned_rows": int(np.sum(pin_side >= 0)), **_moved(side_of, by_side)}
    for side, side_code in (("train", _TRAIN), ("eval", _EVAL)):
        free = np.flatnonzero((group_side == side_code) & ~pinned)  # first-occurrence order
        for phase, ix in zip(PHASES, split_indices(opts.seed, opts.split, len(free))):
            group_phase[free[ix]] = phase
            rank[free[ix]] = np.arange(len(ix))
        described["groups"][side] = [int(np.sum(group_phase[free] == p)) for p in PHASES]
        rows = np.flatnonzero(side_of == side_code)
        phase_of[rows] = group_phase[code[rows]]
        parts[side] = [_ordered(rows[phase_of[rows] == p], code, rank) for p in PHASES]
        _check_parts(name, side, parts[side], len(free), wanted, described, opts)
    pins.add(keys, side_of, phase_of)
    return side_of, phase_of, parts


def _first_occurrence_codes(keys: np.ndarray) -> np.ndarray:
    """Group number per row, groups numbered in the order of their first row."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    renumber = np.empty(len(first), np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(len(first))
    return renumber[inverse.reshape(-1)]


def _group_sides(name: str, code: np.ndarray, by_side: dict[str, np.ndarray], pinned: np.ndarray, described: dict, opts) -> np.ndarray:
    """Side code per group: the eval side wins when a group is on both; a single side is carved 9,1 by
    group (pinned groups are left out of the carve: they keep their pinned side)."""
    sides = np.zeros(len(pinned), np.int8)
    if len(by_side) == 2:
        sides[code[by_side["eval"]]] = _EVAL
        return sides
    (only, _), = by_side.items()
    free = np.flatnonzero(~pinned)
    train, evals = split_indices(opts.seed, CARVE_SPLIT, len(free), parts=2)
    if len(free) and (len(train) == 0 or len(evals) == 0):
        raise DataprepError(
            f"{name}: only {len(free)} {only} prompt groups and no other side; the {CARVE_SPLIT} train/eval carve "
            "leaves one side empty; add rows or a *test* file"
        )
    sides[free[evals]] = _EVAL
    described["carve"] = {"from": only, "split": CARVE_SPLIT, "train": int(len(train)), "eval": int(len(evals)), "unit": "group"}
    return sides


def _moved(side_of: np.ndarray, by_side: dict[str, np.ndarray]) -> dict[str, int]:
    """Rows whose group took them to the other side than their file's (datasets with both sides)."""
    if len(by_side) < 2:
        return {"moved_to_eval": 0, "moved_to_train": 0}
    return {"moved_to_eval": int(np.sum(side_of[by_side["train"]] == _EVAL)),
            "moved_to_train": int(np.sum(side_of[by_side["eval"]] == _TRAIN))}


def _ordered(rows: np.ndarray, code: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Rows by their group's rank in the split, then in file order."""
    return rows[np.lexsort((rows, rank[code[rows]]))]


def _check_parts(name: str, side: str, parts: list[np.ndarray], groups: int, wanted: list[int], described: dict, opts) -> None:
    for p, rows in zip(PHASES, parts):
        if p in wanted and len(rows) == 0:
            raise DataprepError(
                f"{name}: --split {opts.split} --split-by prompt leaves phase {p} with no {side} rows "
                f"({groups} prompt groups); add rows or change the split (0 for a phase you do not want)"
            )
    described["split"][side] = [int(len(rows)) for rows in parts]
    described["unused_rows"][side] = int(sum(len(rows) for p, rows in zip(PHASES, parts) if p not in wanted))


def prompt_overlap(cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]], wanted: list[int]) -> dict:
    """Distinct groups shared between phases (either side) and between train and eval (any phase).

    `cells` holds, per dataset, the (key, side code, phase) of each row that a built phase part
    receives after parsing (before phase-level drops and quotas)."""
    keys = np.concatenate([c[0] for c in cells]) if cells else np.zeros(0, np.uint64)
    side = np.concatenate([c[1] for c in cells]) if cells else np.zeros(0, np.int8)
    phase = np.concatenate([c[2] for c in cells]) if cells else np.zeros(0, np.int8)
    in_phase = {p: np.unique(keys[phase == p]) for p in wanted}
    overlap = {f"phase{a}_phase{b}": int(len(np.intersect1d(in_phase[a], in_phase[b], assume_unique=True)))
               for i, a in enumerate(wanted) for b in wanted[i + 1 :]}
    overlap["train_eval"] = int(len(np.intersect1d(np.unique(keys[side == _TRAIN]), np.unique(keys[side == _EVAL]), assume_unique=True)))
    return overlap
