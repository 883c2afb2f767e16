"""The command line as a user meets it: one-line errors with exit 2 and no traceback, --json
output that parses, --help, and `inspect` on good, foreign, truncated and corrupt files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, SAMPLE_TOKENIZER


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    proc = run("prepare", "--data", str(SAMPLE), "--tokenizer", str(SAMPLE_TOKENIZER), "--split", "6,2,2", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "phase 1" in proc.stdout and "wrote" in proc.stdout
    return out


def test_rerun_says_it_reuses(out):
    proc = run("prepare", "--data", str(SAMPLE), "--tokenizer", str(SAMPLE_TOKENIZER), "--split", "6,2,2", "--out", str(out), "--json")
    assert proc.returncode == 0
    payload = json.loads(proc.stdout)
    assert payload["reused"] is True and payload["phases"]["1"]["train"]["kept"] > 0


def test_help_explains_the_output():
    proc = run("prepare", "--help")
    assert proc.returncode == 0
    assert "manifest.json" in proc.stdout and "--max-prompt-len" in proc.stdout


def test_inspect_text_and_json(out):
    shard = out / "phase2" / "train-00000-of-00001.arrow"
    proc = run("inspect", str(shard), "--rows", "2")
    assert proc.returncode == 0, proc.stderr
    assert "phase       2 (train)" in proc.stdout and "chosen_input_ids" in proc.stdout
    assert "decoded with" in proc.stdout and "Human:" in proc.stdout
    info = json.loads(run("inspect", str(shard), "--json").stdout)
    assert info["phase"] == 2 and info["rows"] > 0 and len(info["first_rows"]) == 3
    assert info["tokens"]["chosen_input_ids"]["max"] <= 512
    assert sum(info["histogram"]["chosen_input_ids"]["counts"]) == info["rows"]


def test_inspect_rejects_what_is_not_a_good_shard(out, tmp_path):
    shard = out / "phase1" / "train-00000-of-00001.arrow"
    truncated = tmp_path / "truncated.arrow"
    truncated.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert_one_line_error(run("inspect", str(truncated)), "truncated.arrow", "truncated or corrupt")
    assert_one_line_error(run("inspect", str(out / "manifest.json")), "not a readable Arrow shard")
    assert_one_line_error(run("inspect", str(out / "normalized" / "sample-hh.arrow")), "not a dataprep shard")
    assert_one_line_error(run("inspect", str(tmp_path / "nope.arrow")), "no such file")
    corrupt = tmp_path / "corrupt.arrow"
    data = bytearray(shard.read_bytes())
    import pyarrow as pa

    column = pa.ipc.open_file(pa.memory_map(str(shard))).read_all().column("input_ids").chunk(0)
    # Overwrite the list offsets with a huge value: the file still opens but its offsets are invalid.
    offsets = bytes(column.buffers()[1])[4:64]
    at = bytes(data).find(offsets)
    data[at : at + 4] = (2**30).to_bytes(4, "little")
    corrupt.write_bytes(bytes(data))
    assert_one_line_error(run("inspect", str(corrupt)), "corrupt.arrow")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--data", "no/such/path"], ["no/such/path", "no such file"]),
        (["--data", str(SAMPLE), "--split", "6,2"], ["--split", "expected 3 numbers"]),
        (["--data", str(SAMPLE), "--seed", "-1"], ["--seed"]),
        (["--data", "hh"], ["hh:", "--data-dir"]),
    ],
)
def test_prepare_errors_are_one_line(tmp_path, args, needles):
    proc = run("prepare", *args, "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, *needles)


def test_bad_row_names_file_line_and_field(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: a\\n\\nAssistant: c"}\n{"chosen": 5, "rejected": "x"}\n')
    proc = run("prepare", "--data", str(bad), "--strict", "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "train.jsonl:2", "'chosen'", "--strict")


def test_negative_split_boundary_is_refused(tmp_path):
    rows = "".join(json.dumps({"chosen": f"\n\nHuman: q{i}\n\nAssistant: a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: b"}) + "\n" for i in range(7))
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "test.jsonl").write_text(rows)
    proc = run("prepare", "--data", str(tmp_path), "--split", "0,1,1", "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "--split '0,1,1' on 7 rows", "negative part")
