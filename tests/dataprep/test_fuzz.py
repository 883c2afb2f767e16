"""Damaged input never ends in a traceback or a hang. Seeded mutations (byte flips, truncations,
inserted, zeroed and duplicated runs) of every supported input format go through `dataprep prepare`,
and of a shard through `dataprep inspect`, both inside a prepared output (where its manifest vouches
for the bytes) and on its own. Each run must succeed or end in one line and exit 2, within seconds."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dataprep import PrepareOptions, cli, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

RUNS_PER_FORMAT = 60
SECONDS_PER_RUN = 30
SEED = os.environ.get("FUZZ_SEED", "")  # another value explores other mutations: FUZZ_SEED=7 pytest tests/dataprep/test_fuzz.py


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One damage of `data`. Most of it lands in the first or last kilobyte, where Arrow and parquet
    files keep their schema, metadata and footer: the bytes a reader must trust before any row."""
    kind = rng.choice(("flip", "truncate", "insert", "zero", "duplicate"))
    n = len(data)
    where = lambda: rng.choice((rng.randrange(n), rng.randrange(min(n, 1024)), n - 1 - rng.randrange(min(n, 1024))))  # noqa: E731
    if kind == "flip":
        out = bytearray(data)
        for at in {where() for _ in range(rng.randint(1, 8))}:
            out[at] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "truncate":
        return data[: rng.randrange(n)]
    at = where()
    if kind == "insert":
        return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == "zero":
        length = rng.randint(1, 64)
        return data[:at] + bytes(min(length, n - at)) + data[at + length :]
    end = min(n, at + rng.randint(1, 256))
    return data[:end] + data[at:end] + data[end:]


def _rows() -> list[dict]:
    lines = (SAMPLE / "train.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    return [json.loads(line) for line in lines]


def _write_formats(root: Path) -> dict[str, Path]:
    """The same 30 HH rows as .jsonl, .jsonl.gz, .json (an array), .parquet and .csv."""
    rows, table = _rows(), pa.Table.from_pylist(_rows())
    files = {name: root / f"train.{name}" for name in ("jsonl", "jsonl.gz", "json", "parquet", "csv")}
    files["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files["jsonl.gz"].write_bytes(gzip.compress(files["jsonl"].read_bytes(), mtime=0))
    files["json"].write_text(json.dumps(rows), encoding="utf-8")
    pq.write_table(table, files["parquet"])
    pacsv.write_csv(table, files["csv"])
    return files


class _Hang(Exception):
    pass


def _run(argv: list[str], capsys, what: str) -> int:
    """One CLI run in this process: it must return 0 or 2 (one line on stderr) within SECONDS_PER_RUN."""

    def alarm(*_):
        raise _Hang(f"{what}: still running after {SECONDS_PER_RUN} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS_PER_RUN)
    try:
        rc = cli.main(argv)
    except _Hang:
        raise
    except BaseException as exc:  # a traceback is exactly what must not happen
        pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2), f"{what}: exit {rc}: {err}"
    if rc == 2:
        assert len(err.splitlines()) == 1 and err.startswith(f"dataprep {argv[0]}: error: "), f"{what}: {err}"
    return rc


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "parquet", "csv"])
def test_prepare_on_damaged_files(fmt, tmp_path, capsys):
    source = _write_formats(tmp_path)[fmt]
    original = source.read_bytes()
    rng = random.Random(f"prepare-{fmt}{SEED}")
    outcomes = []
    for i in range(RUNS_PER_FORMAT):
        damaged = tmp_path / f"d{i}" / source.name
        damaged.parent.mkdir()
        damaged.write_bytes(mutate(original, rng))
        outcomes.append(_run(["prepare", "--data", str(damaged), "--tokenizer", str(SAMPLE_TOKENIZER), "--split", "4,4,2",
                              "--out", str(tmp_path / f"out{i}"), "--quiet"], capsys, f"{fmt} mutation {i}"))
        shutil.rmtree(tmp_path / f"out{i}", ignore_errors=True)
    assert 2 in outcomes  # the mutations do damage: some runs must be refused


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-out")
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="4,4,2", progress=False))
    return out


@pytest.mark.parametrize("where", ["standalone", "in_output"])
def test_inspect_on_damaged_shards(where, prepared, tmp_path, capsys):
    shard = next((prepared / "phase2").glob("train-*.arrow"))
    original = shard.read_bytes()
    rng = random.Random(f"inspect-{where}{SEED}")
    outcomes, changed = [], []
    for i in range(2 * RUNS_PER_FORMAT):
        if where == "in_output":
            out = tmp_path / f"out{i}"
            shutil.copytree(prepared, out)
            damaged = out / "phase2" / shard.name
        else:
            damaged = tmp_path / f"copy{i}.arrow"
        data = mutate(original, rng)
        damaged.write_bytes(data)
        changed.append(data != original)  # zeroing bytes that were zero already changes nothing
        outcomes.append(_run(["inspect", str(damaged), "--rows", "2"], capsys, f"{where} mutation {i}"))
    assert 2 in outcomes
    if where == "in_output":  # the manifest vouches for every byte: no changed shard is read as if it were fine
        assert outcomes == [2 if c else 0 for c in changed]
