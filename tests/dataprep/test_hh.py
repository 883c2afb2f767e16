"""HH-RLHF parsing: prompt + response gives back the original text, and every edge case that
../shared/data/README.md lists is handled (kept or dropped with its reason)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.sources import hh
from tests.conftest import SHARED_HH_FILES, shared_hh


def _native(path: Path) -> pa.Table:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return pa.Table.from_pylist([json.loads(line) for line in f])


def _normalize(rows: list[dict]) -> list[dict]:
    return hh.normalize(pa.Table.from_pylist(rows)).to_pylist()


def test_prompt_ends_at_the_last_assistant_marker():
    text = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: more"
    (row,) = _normalize([{"chosen": text, "rejected": text.replace("more", "less")}])
    assert row["prompt"] == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant:"
    assert (row["chosen"], row["rejected"], row["drop_reason"]) == (" more", " less", None)


@pytest.mark.parametrize(
    "chosen, rejected, reason",
    [
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: a", "identical_pair"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: ", "empty_response"),
        ("\n\nHuman: q\n\nAssistant:", "\n\nHuman: q\n\nAssistant: b", "empty_response"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: other\n\nAssistant: b", "prompt_mismatch"),
        ("\n\nHuman: only a question", "\n\nHuman: only a question?", "no_assistant_turn"),
        ("Human: q Assistant: a\n\nAssistant: b", "Human: q Assistant: a\n\nAssistant: c", None),
    ],
)
def test_drop_reasons(chosen, rejected, reason):
    (row,) = _normalize([{"chosen": chosen, "rejected": rejected}])
    assert row["drop_reason"] == reason
    if reason in ("prompt_mismatch", "no_assistant_turn"):
        # No shared prompt exists: the raw dialogues are kept for the dropped/ table.
        assert (row["prompt"], row["chosen"], row["rejected"]) == (None, chosen, rejected)


def test_a_missing_dialogue_is_a_counted_drop():
    rows = _normalize([{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, {"chosen": "x", "rejected": None}])
    assert [r["drop_reason"] for r in rows] == [None, "missing_field"]


@shared_hh
@pytest.mark.parametrize("path", SHARED_HH_FILES, ids=lambda p: p.parent.name)
def test_round_trip_on_real_hh(path):
    native = _native(path)
    rows = hh.normalize(native).to_pylist()
    assert len(rows) == native.num_rows
    for raw, row in zip(native.to_pylist(), rows):
        if row["prompt"] is not None:
            assert row["prompt"] + row["chosen"] == raw["chosen"]
            assert row["prompt"] + row["rejected"] == raw["rejected"]
            assert row["prompt"].endswith("\n\nAssistant:")


@shared_hh
def test_real_hh_edge_cases_are_counted():
    counts: dict[str, int] = {}
    kept = []
    for path in SHARED_HH_FILES:
        for row in hh.normalize(_native(path)).to_pylist():
            counts[row["drop_reason"]] = counts.get(row["drop_reason"], 0) + 1
            if row["drop_reason"] is None:
                kept.append(row)
    # Counted by hand from the two files (README: identical pairs, empty final replies, prompts that differ).
    assert counts == {None: 3846, "identical_pair": 34, "empty_response": 3, "prompt_mismatch": 3}
    assert sum(counts.values()) == 1137 + 2749
    # Turns lacking the leading blank line stay inside the prompt; the dialogue still parses.
    assert any(" Human:" in r["prompt"].replace("\n\nHuman:", "") for r in kept)
    # Up to 14 Human turns.
    assert max(r["prompt"].count("\n\nHuman:") for r in kept) == 14
