"""`dataprep inspect DIR`: statistics computed from the files (polars) agree with what prepare counted
while it wrote them (the manifest), for a plain, a blended (weights, SFT-only data, shared prompts
across datasets) and a PTX output; the text, --json and --plot outputs; and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataprep
from dataprep.format import TOKEN_COLUMNS, list_views
from dataprep.inspect_dir import DirStats, inspect_dir
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER, python_without

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def truncated_in_shards(out: Path, phase: int, side: str) -> int:
    """Rows of a part cut at --max-seq-len, counted with numpy over the shards' buffers (not polars)."""
    view = dataprep.open(out).phase(phase, side)
    limit, eos, cut = view.manifest.max_seq_len, view.manifest.tokenizer.eos_id, np.zeros(len(view), bool)
    for column in TOKEN_COLUMNS[phase]:
        offsets, values = list_views(view.table.column(column).combine_chunks())
        ends = offsets[1:]
        cut |= (np.diff(offsets) == limit) & (values[np.maximum(ends - 1, 0)] != eos)
    return int(cut.sum())


def assert_agrees_with_manifest(stats: DirStats, manifest: dict, weighted: bool = False) -> None:
    parts = [(p.phase, p.side) for p in stats.parts]
    assert parts == [(int(k), s) for k, sides in manifest["phases"].items() for s in sides] + ([("unsup", "train")] if "unsup" in manifest else [])
    for p in stats.parts:
        info = manifest["unsup"] if p.phase == "unsup" else manifest["phases"][str(p.phase)][p.side]
        assert p.rows == (info["blocks"] if p.phase == "unsup" else info["kept"])
        assert p.dropped == info["dropped"], (p.phase, p.side)
        if p.phase == 3:
            assert p.truncated is None
        elif p.phase in (1, 2):
            # With weights the manifest counts cut rows as tokenized: a row left out by its quota still
            # counts, a repeated one once. inspect counts the rows the shards hold.
            assert p.truncated == (truncated_in_shards(Path(stats.out), p.phase, p.side) if weighted else info["truncated"])
        recorded = {"input_ids": info["tokens"]} if p.phase == "unsup" else info["tokens"]
        for column, lengths in p.tokens.items():
            assert {k: v for k, v in dataclasses.asdict(lengths).items() if k != "histogram"} == recorded[column], (p.phase, p.side, column)
            assert sum(lengths.histogram["counts"]) == p.rows
            assert lengths.histogram["edges"][-1] > p.limit >= lengths.max
    assert stats.overlap == manifest["prompt_overlap"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "out"
    dataprep.prepare(data=[SAMPLE], tokenizer=str(SAMPLE_TOKENIZER), out=out, split="6,2,2", progress=False)
    return out


def test_statistics_from_the_files_agree_with_the_manifest(out):
    stats = inspect_dir(out)
    assert_agrees_with_manifest(stats, dataprep.open(out).manifest.data)
    assert [p.truncated for p in stats.parts if p.phase != 3] == [truncated_in_shards(out, p.phase, p.side) for p in stats.parts if p.phase != 3]
    assert stats.overlap["train_eval"] > 0 and any(p.truncated for p in stats.parts)  # the sample has both


def test_blended_weighted_sft_only_and_ptx(tmp_path):
    rows = {name: (SAMPLE / f"{name}.jsonl").read_text().splitlines(keepends=True) for name in ("train", "test")}

    def dataset(name: str, train: slice, test: slice | None) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.jsonl").write_text("".join(rows["train"][train]))
        if test is not None:
            (tmp_path / name / "test.jsonl").write_text("".join(rows["test"][test]))
        return str(tmp_path / name)

    # a and b share 100 train rows (the same prompts in two datasets); s is SFT-only, its rows split into
    # phases 2 and 3 as well, which inspect must not count there.
    a, b, s = dataset("a", slice(0, 250), slice(0, 50)), dataset("b", slice(150, 400), slice(50, 100)), dataset("s", slice(0, 60), None)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["One document.", "", "Another, longer, document here."] * 20))
    d = dataprep.prepare(data=[f"{a}:2", f"{b}:1"], sft_only_data=s, unsup=docs, unsup_block=16, tokenizer=str(SAMPLE_TOKENIZER),
                         out=tmp_path / "out", progress=False)
    manifest = d.manifest.data
    assert any("over_quota" in info["dropped"] for sides in manifest["phases"].values() for info in sides.values())
    assert manifest["unsup"]["dropped"]
    assert_agrees_with_manifest(inspect_dir(d.out), manifest, weighted=True)


def test_text_json_and_plot(out, tmp_path):
    text = run("inspect", str(out))
    assert text.returncode == 0, text.stderr
    for needle in ("phase2 train", "rejected_input_ids", "dropped because", "prompt_too_long", "prompts shared (split by row)"):
        assert needle in text.stdout
    data = json.loads(run("inspect", str(out), "--json").stdout)
    assert data == json.loads(json.dumps(dataclasses.asdict(inspect_dir(out))))
    plot = tmp_path / "plots" / "sample.png"
    plot.parent.mkdir()
    proc = run("inspect", str(out), "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes()[:8] == PNG and [p.name for p in plot.parent.iterdir()] == ["sample.png"]  # no temp file left
    import matplotlib.image

    pixels = matplotlib.image.imread(str(plot))
    assert pixels.shape[0] > 500 and len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 20  # drawn, not blank


def test_plot_without_matplotlib_says_how_to_install(out, tmp_path):
    plot = tmp_path / "x.png"
    proc = python_without({"matplotlib"}, f"from dataprep.cli import main; raise SystemExit(main(['inspect', {str(out)!r}, '--plot', {str(plot)!r}]))")
    assert_one_line_error(proc, "--plot needs matplotlib", "pip install 'rlhfkit-dataprep[plot]'")
    assert not plot.exists()


def test_bad_input_is_one_line(out, tmp_path):
    assert_one_line_error(run("inspect", str(out), "--plot", str(tmp_path / "x.jpg")), "x.jpg", "*.png")
    assert_one_line_error(run("inspect", str(out), "--plot", str(tmp_path / "no" / "dir" / "x.png")), "x.png", "cannot write")
    shard = out / "phase1" / "train-00000-of-00001.arrow"
    assert_one_line_error(run("inspect", str(shard), "--plot", str(tmp_path / "x.png")), "pass its DIR")
    assert_one_line_error(run("inspect", str(tmp_path)), "no manifest")
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    table = damaged / "dropped" / "sample-hh.arrow"
    table.write_bytes(table.read_bytes()[:200])
    assert_one_line_error(run("inspect", str(damaged)), "dropped/sample-hh.arrow", "dataprep verify")


def test_a_row_cut_right_after_a_literal_eos_counts_alike_in_the_manifest_and_inspect(tmp_path):
    """Its shard row ends in EOS like a whole row: prepare and inspect both count it as whole, and count
    the rows cut elsewhere as truncated."""
    answer = "one two three<|endoftext|> four five six"
    rows = [{"prompt": f"Human: question {i}? Assistant:", "chosen": answer if i % 2 else "one two three four five six seven",
             "rejected": "no"} for i in range(20)]
    (tmp_path / "eos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = dataprep.load_tokenizer(str(SAMPLE_TOKENIZER))
    at = tok.encode([" " + rows[1]["prompt"] + " " + answer])[0].index(tok.eos_id)
    d = dataprep.prepare(data=str(tmp_path / "eos.jsonl"), tokenizer=str(SAMPLE_TOKENIZER), out=tmp_path / "out", split="1,1,0",
                         max_seq_len=at + 1, progress=False)
    manifest = d.manifest.data
    ends = [row[-1] for p in (1, 2) for side in ("train", "eval") for row in d.phase(p, side).table.column(TOKEN_COLUMNS[p][0]).to_pylist()]
    assert ends.count(tok.eos_id) >= 4 and len(ends) - ends.count(tok.eos_id) >= 4  # both kinds of row in the shards
    for p in inspect_dir(d.out).parts:
        assert p.truncated == manifest["phases"][str(p.phase)][p.side]["truncated"] == truncated_in_shards(d.out, p.phase, p.side), (p.phase, p.side)
