"""Every kind of bad input a user can give gets one clear line, exit 2, no traceback and no partial
output; the odd-but-valid files users have are read correctly; rows bad on their own are counted drops."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

GOOD = {"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}


def prepare(*args: str, data: Path | str = SAMPLE, tokenizer: Path | str = SAMPLE_TOKENIZER, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dataprep", "prepare", "--data", str(data), "--tokenizer", str(tokenizer), "--out", str(out), "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def assert_refused(proc: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    leftovers = [p.name for p in out.iterdir() if p.name != ".dataprep.lock"] if out.exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


def _rows(n: int = 40) -> str:
    return "".join(json.dumps({k: v.replace("hi", f"hi {i}") for k, v in GOOD.items()}) + "\n" for i in range(n))


@pytest.mark.parametrize(
    "name, content, needles",
    [
        ("train.jsonl", _rows(5) + '{"chosen": "a" "rejected": "b"}\n', ["train.jsonl:6: not valid JSON"]),
        ("train.jsonl", '{"chosen": "a"}\n', ["train.jsonl: missing column(s) rejected", "found: chosen"]),
        ("train.jsonl", '{"chosen": 1, "rejected": "a"}\n{"chosen": 2, "rejected": "b"}\n', ["column 'chosen' is not text in any row"]),
        ("train.jsonl", "", ["train.jsonl: empty file"]),
        ("train.jsonl", b'{"chosen": "caf\xe9", "rejected": "b"}\n', ["train.jsonl:1: not valid UTF-8"]),
        ("train.jsonl.gz", gzip.compress(_rows(2000).encode())[:3000], ["train.jsonl.gz: truncated or damaged gzip file"]),
        ("train.parquet", "not parquet at all", ["train.parquet: cannot be read as parquet"]),
    ],
    ids=["bad-json-line", "missing-column", "wrong-type-column", "empty-file", "not-utf8", "gzip-cut-short", "not-parquet"],
)
def test_bad_files(tmp_path, name, content, needles):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_refused(prepare(data=path, out=tmp_path / "out"), tmp_path / "out", *needles)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--split", "6,2"], ["--split '6,2': expected 3 numbers"]),
        (["--split", "a,b,c"], ["--split 'a,b,c': expected comma-separated numbers"]),
        (["--split=-1,1,1"], ["--split '-1,1,1': weights must be non-negative"]),
        (["--split", "-1,1,1"], ["argument --split: expected one argument", "--option=VALUE"]),
        (["--split", "0,0,0"], ["--split '0,0,0': weights must be non-negative and not all zero"]),
        (["--split", "6,2,2,1"], ["--split '6,2,2,1': expected 3 numbers"]),
        (["--seed", "abc"], ["argument --seed: invalid int value: 'abc'"]),
        (["--max-seq-len", "0"], ["--max-seq-len 0: must be at least 2"]),
    ],
)
def test_bad_options(tmp_path, args, needles):
    assert_refused(prepare(*args, out=tmp_path / "out"), tmp_path / "out", *needles)


@pytest.mark.parametrize(
    "name, content, needles",
    [
        ("bench.jsonl", "", ["bench.jsonl: empty file"]),
        ("bench.jsonl", '{"id": 1, "score": 0.5}\n', ["--decontaminate", "bench.jsonl: no text column", "found: id, score"]),
        ("bench.jsonl", '{"text": "too short to share thirteen words"}\n', ["bench.jsonl: no text of 13 words or more"]),
        ("bench.txt", "plain text", ["--decontaminate", "bench.txt: unsupported file type"]),
        ("bench.jsonl", '{"text": 1}\n{"text": 2}\n', ["column 'text' is not text in any row"]),
    ],
    ids=["empty", "no-text-column", "too-short", "unsupported", "text-not-strings"],
)
def test_bad_decontamination_files(tmp_path, name, content, needles):
    bench = tmp_path / name
    bench.write_text(content)
    assert_refused(prepare("--decontaminate", str(bench), out=tmp_path / "out"), tmp_path / "out", *needles)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--decontaminate", "nope.jsonl"], ["--decontaminate nope.jsonl: no such file or directory"]),
        (["--decontaminate", str(SAMPLE), "--decontam-ngram", "0"], ["--decontam-ngram 0: must be at least 1 word"]),
        (["--decontam-ngram", "x"], ["argument --decontam-ngram: invalid int value: 'x'"]),
    ],
)
def test_bad_decontamination_options(tmp_path, args, needles):
    assert_refused(prepare(*args, out=tmp_path / "out"), tmp_path / "out", *needles)


def test_unknown_dataset_name_suggests(tmp_path):
    assert_refused(prepare(data="hhh", out=tmp_path / "out"), tmp_path / "out", "--data hhh: not a registered dataset", "did you mean hh")


def test_path_that_does_not_exist(tmp_path):
    assert_refused(prepare(data=tmp_path / "nope.jsonl", out=tmp_path / "out"), tmp_path / "out", "nope.jsonl: no such file or directory")


@pytest.mark.parametrize("tokenizer, needle", [("missing/tokenizer.json", "not found"), (__file__, "not found or not a tokenizer")])
def test_missing_or_unreadable_tokenizer(tmp_path, tokenizer, needle):
    assert_refused(prepare(tokenizer=tokenizer, out=tmp_path / "out"), tmp_path / "out", "--tokenizer", needle)


def test_corrupt_tokenizer(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": ')
    assert_refused(prepare(tokenizer=bad, out=tmp_path / "out"), tmp_path / "out", "not a valid tokenizer.json")


def test_output_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = prepare(out=tmp_path / "file" / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--out" in proc.stderr


@contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); needs root with mount rights")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])


def test_output_directory_not_writable(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        proc = prepare(out=ro / "out")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "--out" in proc.stderr and "not writable" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_full_disk(tmp_path):
    with tmpfs(tmp_path / "small", "size=400k") as small:
        out = small / "out"
        assert_refused(prepare(out=out), out, "no space left on device")
        assert not list(out.glob(".staging-*"))


def test_odd_but_valid_files_are_read(tmp_path):
    rows = [dict(GOOD) for _ in range(30)]
    for i, row in enumerate(rows):
        for side in ("chosen", "rejected"):
            row[side] = row[side].replace("hi", f"hi {i} — ça va? 日本語 🍞")
    rows[3]["chosen"] = rows[3]["chosen"] + " " + "long " * (2_200_000)  # one record over 10 MB
    src = tmp_path / "data"
    src.mkdir()
    body = "\r\n\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n"
    (src / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))  # BOM, CRLF, blank lines
    (src / "test.json").write_text(json.dumps(rows[:12], ensure_ascii=False))  # one JSON array
    out = tmp_path / "out"
    proc = prepare("--split", "4,3,3", "--json", data=src, out=out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["inputs"][0]["rows"] == {"eval": 12, "train": 30}
    assert all(not f["dropped"] for f in manifest["inputs"][0]["files"])


def test_rows_bad_on_their_own_are_counted_drops(tmp_path):
    lines = _rows(40).splitlines()
    lines[3] = json.dumps({"chosen": GOOD["chosen"], "rejected": None})
    lines[7] = json.dumps({"chosen": GOOD["chosen"], "rejected": 42})
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    proc = prepare("--json", "--split", "1,1,1", data=path, out=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)["inputs"][0]["files"]
    assert record["dropped"] == {"missing_field": 1, "wrong_type": 1}
    strict = prepare("--strict", data=path, out=tmp_path / "strict")
    assert_refused(strict, tmp_path / "strict", "train.jsonl:8: field 'rejected' is int, expected a string (--strict)")
