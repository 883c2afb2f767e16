"""--split-by prompt: every pair sharing a prompt lands in one phase and side, across files and
datasets, every row is still accounted for, and the manifest's overlap report shows zero (and shows
DeepSpeed-Chat's leak in row mode on the same data)."""

from __future__ import annotations

import json
import random
from pathlib import Path
import numpy as np
import pyarrow as pa
import pytest

from dataprep import plan
from dataprep import PrepareOptions, prepare
from dataprep.pool import group_keys
from dataprep.sources import CANONICAL
from dataprep.split import Split
from dataprep.verify import verify
from tests.conftest import SAMPLE_TOKENIZER

SPLIT = "4,3,3"


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _pairs(prompts: list[str], per_prompt, tag: str) -> list[dict]:
    rows = [{"prompt": p, "chosen": f"good {tag} {p[-3:]} {k}", "rejected": f"bad {tag} {p[-3:]} {k}"}
            for i, p in enumerate(prompts) for k in range(per_prompt(i))]
    random.Random(tag).shuffle(rows)  # a prompt's pairs are scattered through the file
    return rows


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> dict:
    """p: train and test files, 3 prompts in both; q: train only, 5 prompts shared with p."""
    root = tmp_path_factory.mktemp("prompts")
    prompts = [f"Human: question number {i:03d}? Assistant:" for i in range(60)]
    p_train = _pairs(prompts[:30], lambda i: 1 + i % 6, "p-train")
    p_train.insert(5, {"prompt": None, "chosen": "orphan", "rejected": "row"})  # dropped while parsing: its own group
    p_train.insert(9, {"prompt": prompts[0], "chosen": "same", "rejected": "same"})  # identical_pair, in prompt 0's group
    p_test = _pairs(prompts[27:35], lambda i: 3, "p-test")  # prompts 27-29 are in train too
    q_train = _pairs(prompts[25:30] + prompts[40:55], lambda i: 4, "q-train")  # 25-29 also in p
    files = {"p/train": p_train, "p/test": p_test, "q/train": q_train}
    for name, rows in files.items():
        _write(root / f"{name}.jsonl", rows)
    return {"root": root, "files": files}


def _run(fixture, out: Path, split_by: str) -> dict:
    data = [str(fixture["root"] / "p"), str(fixture["root"] / "q")]
    opts = PrepareOptions(data=data, out=out, tokenizer=str(SAMPLE_TOKENIZER), split=SPLIT, split_by=split_by, progress=False)
    return prepare(opts).manifest


@pytest.fixture(scope="module")
def by_prompt(fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("by-prompt") / "out"
    return out, _run(fixture, out, "prompt")


def _read(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _shard_prompts(out: Path, files: dict) -> dict[tuple[int, str], set[str]]:
    """The prompt text of every row in the shards, by (phase, side), looked up in the fixture's files."""
    found = {}
    for phase in (1, 2, 3):
        for side in ("train", "eval"):
            table = pa.concat_tables(_read(p) for p in sorted((out / f"phase{phase}").glob(f"{side}-*.arrow")))
            found[phase, side] = {files[s][r]["prompt"] for s, r in zip(table.column("source").to_pylist(), table.column("row_id").to_pylist())}
    return found


def test_no_prompt_is_shared_between_phases_or_sides(by_prompt, fixture):
    out, manifest = by_prompt
    assert manifest["prompt_overlap"] == {"split_by": "prompt", "phase1_phase2": 0, "phase1_phase3": 0, "phase2_phase3": 0, "train_eval": 0}
    found = _shard_prompts(out, fixture["files"])
    for a in found:
        for b in found:
            if a != b:
                assert not found[a] & found[b], (a, b)
    assert verify(out)[0] == []


def test_groups_stay_whole_across_files_and_datasets(by_prompt, fixture):
    out, _ = by_prompt
    placed: dict[str, set] = {}
    for table in [_read(p) for p in sorted((out / "normalized").glob("*.arrow"))] + [_read(p) for p in sorted((out / "dropped").glob("*.arrow"))]:
        for row in table.select(["prompt", "side", "phase"]).to_pylist():
            if row["prompt"] is not None:
                placed.setdefault(row["prompt"], set()).add((row["side"], row["phase"]))
    assert len(placed) == 35 + 15  # p: prompts 0-34, q adds 40-54
    assert all(len(where) == 1 for where in placed.values())
    # the identical pair was dropped while parsing, but sits with its prompt's group (checked above)
    dropped = _read(out / "dropped" / "p.arrow").to_pylist()
    assert [r["prompt"] for r in dropped if r["reason"] == "identical_pair"] == [" Human: question number 000? Assistant:"]


def test_a_prompt_in_both_files_goes_to_eval(by_prompt, fixture):
    out, manifest = by_prompt
    test_prompts = {r["prompt"] for r in fixture["files"]["p/test"]}
    moving = [i for i, r in enumerate(fixture["files"]["p/train"]) if r["prompt"] in test_prompts]
    p = next(d for d in manifest["inputs"] if d["name"] == "p")
    assert p["groups"]["moved_to_eval"] == len(moving) > 0 and p["groups"]["moved_to_train"] == 0
    sides = {r["row_id"]: r["side"] for r in _read(out / "normalized" / "p.arrow").to_pylist() if r["source"] == "p/train"}
    assert all(sides[i] == "eval" for i in moving if i in sides)


def test_the_split_is_deepspeed_chats_over_groups(by_prompt, fixture):
    _, manifest = by_prompt
    p = next(d for d in manifest["inputs"] if d["name"] == "p")
    test_prompts = {r["prompt"] for r in fixture["files"]["p/test"]}
    train_groups = len({r["prompt"] for r in fixture["files"]["p/train"] if r["prompt"] not in test_prompts} - {None}) + 1  # + the orphan
    assert p["groups"]["train"] == [len(ix) for ix in Split.parse(SPLIT).indices(1234, train_groups)]
    assert p["groups"]["eval"] == [len(ix) for ix in Split.parse(SPLIT).indices(1234, len(test_prompts))]
    q = next(d for d in manifest["inputs"] if d["name"] == "q")
    assert q["groups"]["pinned_rows"] == 5 * 4  # prompts 25-29 were placed by p
    assert q["carve"]["unit"] == "group"


def test_every_row_is_accounted_for(by_prompt, fixture):
    out, manifest = by_prompt
    for d in manifest["inputs"]:
        total = sum(len(rows) for name, rows in fixture["files"].items() if name.startswith(d["name"] + "/"))
        assert sum(d["rows"].values()) == total
        for side in ("train", "eval"):
            into_phases = sum(manifest["phases"][ph][side]["by_dataset"][d["name"]]["rows_in"] for ph in "123")
            assert into_phases + d["unused_rows"][side] == sum(d["split"][side])
        assert sum(sum(d["split"][s]) for s in ("train", "eval")) == total
    for sides in manifest["phases"].values():
        for info in sides.values():
            assert info["kept"] + sum(info["dropped"].values()) == info["rows_in"]


def test_row_mode_reports_the_leak(fixture, tmp_path):
    manifest = _run(fixture, tmp_path / "out", "row")
    overlap = manifest["prompt_overlap"]
    assert overlap["split_by"] == "row"
    assert min(overlap["phase1_phase2"], overlap["phase1_phase3"], overlap["phase2_phase3"], overlap["train_eval"]) > 0
    assert "groups" not in manifest["inputs"][0]


def test_a_group_column_outweighs_the_prompt():
    """SHP sets `group` to the post id: rows of one post stay together even with different prompts."""
    rows = pa.Table.from_pylist(
        [{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "drop_reason": None, "group": f"post{i % 7}" if i < 70 else None}
         for i in range(100)], schema=CANONICAL)
    keys = group_keys(rows, "shp/train", 0)
    assert len(np.unique(keys)) == 7 + 30
    split = plan.split_rows("shp", keys, {"train": np.arange(100)}, Split.parse(SPLIT), (1, 2, 3), 1234, plan.Pins())
    for post in range(7):
        members = np.arange(post, 70, 7)
        assert len(set(zip(split.side_of[members], split.phase_of[members]))) == 1
    assert sorted(np.concatenate([ix for side in split.parts.values() for ix in side]).tolist()) == list(range(100))
    assert split.carve.record() == {"from": "train", "split": "9,1", "train": 33, "eval": 4, "unit": "group"}
