"""Split parity with DeepSpeed-Chat: the golden values of dschat.md section 2 and an independent
re-derivation written from the algorithm's description."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataprep.errors import DataprepError
from dataprep.split import Split, shuffle_index


def test_permutation_golden():
    assert shuffle_index(1234, 10).tolist() == [7, 2, 9, 1, 0, 8, 4, 5, 6, 3]


def test_first_indices_of_each_phase_golden():
    parts = Split.parse("2,4,4").indices(1234, 1000)
    assert [p[:5].tolist() for p in parts] == [[681, 990, 155, 768, 438], [281, 42, 255, 906, 394], [97, 834, 650, 55, 43]]


@pytest.mark.parametrize(
    "size, spec, sizes",
    [
        (1000, "6,2,2", [600, 200, 200]),
        (1000, "2,4,4", [200, 400, 400]),
        (1000, "10,0,0", [1000, 0, 0]),
        (10007, "6,2,2", [6005, 2001, 2001]),
        (10007, "2,4,4", [2001, 4003, 4003]),
        (10007, "10,0,0", [10007, 0, 0]),
        (10007, "1,1,1", [3335, 3336, 3336]),  # the whole correction lands on part 0
        (1000, "1,1,1", [334, 333, 333]),
        (76256, "2,4,4", [15252, 30502, 30502]),  # Dahoas/rm-static train
        (5103, "2,4,4", [1021, 2041, 2041]),  # Dahoas/rm-static test
        (29829, "2,4,4", [5965, 11932, 11932]),
        (3314, "2,4,4", [662, 1326, 1326]),
        (17620, "2,4,4", [3524, 7048, 7048]),
        (1958, "2,4,4", [392, 783, 783]),
        (1, "2,4,4", [1, 0, 0]),
    ],
)
def test_part_sizes_golden(size, spec, sizes):
    assert [len(p) for p in Split.parse(spec).indices(1234, size)] == sizes


@pytest.mark.parametrize("size, sizes", [(33143, [29829, 3314]), (19578, [17620, 1958]), (5, [5, 0])])
def test_train_eval_carve_golden(size, sizes):
    assert [len(p) for p in Split.parse("9,1", parts=2).indices(1234, size)] == sizes


def _legacy_shuffle(seed: int, size: int) -> list[int]:
    """numpy's legacy RandomState.shuffle, re-implemented on the raw MT19937 stream: for i from n-1
    down to 1, draw j in [0, i] by masked rejection on 32-bit outputs, then swap."""
    bits = np.random.MT19937()
    bits._legacy_seeding(seed)
    perm = list(range(size))
    for i in reversed(range(1, size)):
        mask = i
        for shift in (1, 2, 4, 8, 16):
            mask |= mask >> shift
        while (j := int(bits.random_raw()) & mask) > i:
            pass
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def _rederived(seed: int, spec: str, size: int) -> list[list[int]] | None:
    """Independent re-derivation from dschat.md section 2; None where the boundaries go negative."""
    from fractions import Fraction

    weights = [float(x) for x in spec.split(",")]
    cuts = [0]
    for w in weights:
        exact = Fraction(w / sum(weights) * float(size))  # the float product, rounded half to even
        floor = math.floor(exact)
        up = exact - floor > Fraction(1, 2) or (exact - floor == Fraction(1, 2) and floor % 2 == 1)
        cuts.append(cuts[-1] + floor + int(up))
    excess = cuts[-1] - size
    cuts = [0] + [c - excess for c in cuts[1:]]
    if any(b < a for a, b in zip(cuts, cuts[1:])):
        return None
    perm = _legacy_shuffle(seed, size)
    return [perm[a:b] for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("seed", [0, 1, 42, 1234, 2**32 - 1])
@pytest.mark.parametrize("spec", ["6,2,2", "2,4,4", "1,1,1", "3,3,4", "10,0,0", "0,1,1", "0.5,0.25,0.25"])
@pytest.mark.parametrize("size", [2, 7, 10, 99, 1000, 3887])
def test_matches_rederivation(seed, spec, size):
    expected = _rederived(seed, spec, size)
    if expected is None:
        with pytest.raises(DataprepError, match="negative part"):
            Split.parse(spec).indices(seed, size)
        return
    got = [p.tolist() for p in Split.parse(spec).indices(seed, size)]
    assert got == expected
    assert sorted(i for p in got for i in p) == list(range(size)), "parts must partition the rows"


def test_negative_boundary_is_an_error_not_an_overlap():
    # DeepSpeed-Chat: boundaries [0, -1, 3, 7] -> phase 1 gets perm[0:-1] (6 rows) and overlaps phase 3.
    with pytest.raises(DataprepError, match="negative part"):
        Split.parse("0,1,1").boundaries(7)


@pytest.mark.parametrize("spec", ["a,b,c", "1,2", "1,2,3,4", "-1,1,1", "0,0,0", "", "1,,1", "nan,1,1"])
def test_malformed_split_strings(spec):
    with pytest.raises(DataprepError, match="--split"):
        Split.parse(spec)


def test_dtype_rule_does_not_change_the_permutation():
    a = np.arange(1000, dtype=np.int64)
    np.random.RandomState(7).shuffle(a)
    assert shuffle_index(7, 1000).tolist() == a.tolist()
