"""Rankings end to end, on a local copy shaped like openbmb/UltraFeedback: every pair of a prompt in one
phase and side (also under --split-by row), responses in and pairs out in the manifest with
rows_in = kept + sum(dropped) everywhere, one row per prompt in phases 1 and 3, scores in the phase-2
shards, the new options in the cache key, byte-identical output for any thread count and chunk size,
and the bad input that stops prepare."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import dataprep
from dataprep import PrepareOptions, prepare
from dataprep.format import open_shards
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER
from tests.dataprep.sources.native import write_jsonl
from tests.dataprep.sources.test_ranking import ultrafeedback
from tests.dataprep.test_bad_input import assert_refused, prepare as prepare_cli

SCORES = (2.0, 5.0, 7.5, 9.0)


def write_ultrafeedback(root: Path, prompts: int = 240, seed: int = 0) -> list[dict]:
    """Two per-source files of rankings with 1-4 responses; equal scores are common, and some
    instructions come back in a later ranking (the same prompt, judged twice)."""
    rng = random.Random(seed)
    rows = []
    for i in range(prompts):
        instruction = f"Question {i % 200}: how do I {rng.choice(['bake', 'fix', 'plant', 'learn'])} thing {i % 200}?"
        k = rng.choice([1, 2, 3, 4, 4, 4])
        rows.append(ultrafeedback(instruction, *((f"answer {j} to {i}: {rng.random():.3f}", rng.choice(SCORES)) for j in range(k))))
    write_jsonl(root / "flan.jsonl", rows[: prompts // 2])
    write_jsonl(root / "evol_instruct.jsonl", rows[prompts // 2 :])
    return rows


def run(root: Path, out: Path, **options) -> dataprep.Prepared:
    return dataprep.prepare(data="ultrafeedback-raw", data_dir=root, out=out, tokenizer=str(SAMPLE_TOKENIZER), split="2,4,4",
                            max_prompt_len=512, progress=False, **options)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("uf")
    rows = write_ultrafeedback(root)
    return rows, run(root, root / "out")


def normalized(out: Path) -> pa.Table:
    return pa.ipc.open_file(str(out / "normalized" / "ultrafeedback-raw.arrow")).read_all()


def test_every_pair_of_a_prompt_is_in_one_phase_and_side(built):
    _, result = built
    places = defaultdict(set)
    for row in normalized(result.out).select(["prompt", "side", "phase"]).to_pylist():
        places[row["prompt"]].add((row["side"], row["phase"]))
    assert len(places) > 150 and all(len(p) == 1 for p in places.values())
    overlap = result.manifest["prompt_overlap"]
    assert overlap["split_by"] == "row" and {k: v for k, v in overlap.items() if k != "split_by"} == dict.fromkeys(overlap.keys() - {"split_by"}, 0)


def test_manifest_counts_responses_in_and_pairs_out(built):
    rows, result = built
    sizes = [len(r["completions"]) for r in rows]
    record = result.manifest["inputs"][0]
    assert record["ranking"] == {"prompts": len(rows), "responses": sum(sizes), "pairs": sum(k - 1 for k in sizes if k > 1)}
    assert sum(f["ranking"]["prompts"] for f in record["files"]) == len(rows)
    # A row is a pair, or a ranking that gave none (too_few_responses): every phase and side adds up.
    assert sum(record["rows"].values()) == record["ranking"]["pairs"] + sizes.count(1)
    in_phases = 0
    for phase, sides in result.manifest["phases"].items():
        for side, info in sides.items():
            assert info["rows_in"] == info["kept"] + sum(info["dropped"].values()), (phase, side)
            in_phases += info["rows_in"]
    assert in_phases == sum(record["rows"].values())
    drops = {reason for sides in result.manifest["phases"].values() for info in sides.values() for reason in info["dropped"]}
    assert {"tie", "too_few_responses", "later_pair"} <= drops


def test_phases_1_and_3_take_one_row_per_prompt_with_its_best_response(built):
    _, result = built
    table = normalized(result.out)
    for phase in (1, 3):
        for side in ("train", "eval"):
            prompts = {r["prompt"] for r in table.to_pylist() if r["phase"] == phase and r["side"] == side}
            info = result.manifest["phases"][str(phase)][side]
            assert info["kept"] == len(prompts) and info["dropped"]["later_pair"] > 0
    sft = result.phase(1, "train")
    first = sft.table.column("row_id")[0].as_py()
    source = sft.table.column("source")[0].as_py()
    pair = next(r for r in table.to_pylist() if r["row_id"] == first and r["source"] == source)
    best = max(s for r in table.to_pylist() if r["prompt"] == pair["prompt"] for s in (r["chosen_score"], r["rejected_score"]))
    assert pair["chosen_score"] == best


def test_phase_2_shards_carry_the_scores_and_hh_shards_null_ones(built, tmp_path):
    _, result = built
    shard = result.phase(2, "train").table
    # A ranking's pairs share their native row's (source, row_id), and keep its pairs' order.
    pairs, written = defaultdict(list), defaultdict(list)
    for r in normalized(result.out).to_pylist():
        if (r["phase"], r["side"]) == (2, "train"):
            pairs[r["source"], r["row_id"]].append((r["chosen_score"], r["rejected_score"]))
    for row in shard.select(["source", "row_id", "chosen_score", "rejected_score"]).to_pylist():
        written[row["source"], row["row_id"]].append((row["chosen_score"], row["rejected_score"]))
        assert row["chosen_score"] > row["rejected_score"]  # ties were dropped
    assert written == pairs and any(len(p) > 1 for p in pairs.values())
    assert shard.schema.field("chosen_score").type == pa.float32()
    hh = prepare(PrepareOptions(data=[str(SAMPLE)], out=tmp_path / "hh", tokenizer=str(SAMPLE_TOKENIZER), progress=False))
    scores = open_shards(hh.out, 2, "train").tables[0].column("chosen_score")
    assert scores.null_count == len(scores) > 0


@pytest.mark.parametrize("change", [{"pairs": "all"}, {"pairs": "best-vs-worst"}, {"keep_ties": True}])
def test_new_options_change_the_output_and_the_cache_key(tmp_path, change):
    write_ultrafeedback(tmp_path, prompts=120)
    base = run(tmp_path, tmp_path / "out")
    changed = run(tmp_path, tmp_path / "out", **change)
    assert not changed.reused and changed.manifest["cache_key"] != base.manifest["cache_key"]
    assert run(tmp_path, tmp_path / "out", **change).reused
    pairs = changed.manifest["inputs"][0]["ranking"]["pairs"]
    assert pairs != base.manifest["inputs"][0]["ranking"]["pairs"] or "keep_ties" in change
    ties = sum(info["dropped"].get("tie", 0) for sides in changed.manifest["phases"].values() for info in sides.values())
    assert (ties == 0) == ("keep_ties" in change)


def _prepare_in_a_process(root: Path, out: Path, threads: int, chunk: int) -> None:
    code = ("import dataprep; from dataprep import phases; "
            f"phases.ENCODE_CHUNK = {chunk}; "
            f"dataprep.prepare(data='ultrafeedback-raw', data_dir={str(root)!r}, out={str(out)!r}, tokenizer={str(SAMPLE_TOKENIZER)!r}, "
            "pairs='all', progress=False)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "RAYON_NUM_THREADS": str(threads)})


def test_byte_identical_for_any_thread_count_and_chunk_size(tmp_path):
    write_ultrafeedback(tmp_path, prompts=120)
    snapshots = []
    for i, (threads, chunk) in enumerate([(1, 1024), (2, 7)]):
        _prepare_in_a_process(tmp_path, tmp_path / f"out{i}", threads, chunk)
        manifest = json.loads((tmp_path / f"out{i}" / "manifest.json").read_text())
        manifest.pop("run")
        snapshots.append({p.relative_to(tmp_path / f"out{i}").as_posix(): p.read_bytes() for p in (tmp_path / f"out{i}").glob("*/*.arrow")}
                         | {"manifest": json.dumps(manifest, sort_keys=True).encode()})
    assert len(snapshots[0]) == 9 and snapshots[0] == snapshots[1]


@pytest.mark.parametrize("row, needles", [
    ({"prompt": "Q?", "responses": ["x", "y"], "ranks": [1]}, ["ranked.jsonl: row 40: field 'ranks' has 1 entries for 2 responses"]),
    ({"prompt": "Q?", "responses": ["x", "y"], "ranks": ["first", "second"]}, ["ranked.jsonl:41: field 'ranks'"]),
    ({"prompt": "Q?", "responses": ["x", "y"], "ranks": [1, None]}, []),  # a null rank: a counted drop, not an error
])
def test_bad_rankings_stop_prepare_in_one_line(tmp_path, row, needles):
    good = [{"prompt": f"Q{i}?", "responses": [f"x{i}", f"y{i}"], "ranks": [2, 1]} for i in range(40)]
    path = write_jsonl(tmp_path / "ranked.jsonl", good + [row])
    proc = prepare_cli("--split", "1,1,1", data=path, out=tmp_path / "out")
    if not needles:
        assert proc.returncode == 0, proc.stderr
        return
    assert_refused(proc, tmp_path / "out", *needles)


def test_pairs_on_data_without_rankings_is_refused(tmp_path):
    assert_refused(prepare_cli("--pairs", "all", out=tmp_path / "out"), tmp_path / "out", "--pairs all: no ranking dataset among --data")


def test_scores_give_margins_through_the_trainer_dataset(built):
    """What the reward trainer reads: each pair's scores, as the collator turns them into a margin."""
    pytest.importorskip("torch")
    _, result = built
    rows = result.phase(2, "train").torch()
    chosen, rejected = rows.scalar("chosen_score"), rows.scalar("rejected_score")
    assert len(chosen) == len(rows) and np.all(chosen > rejected)
    assert rows[0]["chosen_score"] == chosen[0]


def test_a_screened_first_pair_hands_phases_1_and_3_to_the_prompts_next_kept_pair(tmp_path):
    """Only the best response leaks a benchmark sentence: under --pairs all, the pairs holding it are
    `contaminated`, and each prompt's (second, third) pair is its row in phase 1 or 3."""
    leak = "the quick brown fox jumps over the lazy dog near the old river bank today"
    rows = [{"prompt": f"Question {i}?", "responses": [f"worst {i}.", f"Best {i}: {leak}.", f"a fair answer {i}."], "scores": [1, 3, 2]}
            for i in range(40)]
    data = write_jsonl(tmp_path / "ranked.jsonl", rows)
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"text": f"Benchmark: {leak}."}])
    result = dataprep.prepare(data=data, decontaminate=[str(bench)], pairs="all", split="1,1,1", out=tmp_path / "out",
                              tokenizer=str(SAMPLE_TOKENIZER), progress=False)
    kept = pa.ipc.open_file(str(result.out / "normalized" / "ranked.arrow")).read_all().to_pylist()
    assert {(r["chosen"], r["rejected"]) for r in kept} == {(f" a fair answer {i}.", f" worst {i}.") for i in range(40)}
    by_row = {(r["source"], r["row_id"]): r for r in kept}
    for phase in (1, 3):
        for side in ("train", "eval"):
            prompts = {r["prompt"] for r in kept if (r["phase"], r["side"]) == (phase, side)}
            shard = result.phase(phase, side).table.select(["source", "row_id"]).to_pylist()
            assert sorted(by_row[r["source"], r["row_id"]]["prompt"] for r in shard) == sorted(prompts), (phase, side)
            assert result.manifest["phases"][str(phase)][side]["dropped"].get("later_pair", 0) == 0
        assert result.manifest["phases"][str(phase)]["train"]["kept"] > 0
