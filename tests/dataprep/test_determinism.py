"""Same inputs and options: byte-identical shards, tables and manifest (all but its `run` section),
on repeated runs, whatever the tokenizer's thread count, the tokenization batch size and the screen's
chunking (dedup and decontamination on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE, SAMPLE_TOKENIZER, sample_texts


def _run(out: Path, threads: int, chunk: int, bench: Path) -> None:
    code = (
        "import sys; from pathlib import Path; import dataprep; from dataprep import phases, screen; "
        f"phases.ENCODE_CHUNK = {chunk}; screen.CHUNK = {chunk}; "
        f"dataprep.prepare(dataprep.PrepareOptions(data=[{str(SAMPLE)!r}], out=Path({str(out)!r}), tokenizer={str(SAMPLE_TOKENIZER)!r}, split='6,2,2', "
        f"decontaminate=[{str(bench)!r}], decontam_ngram=8, progress=False))"
    )
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _snapshot(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*.arrow")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest.pop("run")) == {"created", "seconds"}
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def test_byte_identical_across_runs_threads_and_batches(tmp_path):
    bench = tmp_path / "bench.jsonl"  # two of the sample's replies, as an eval set: some rows are contaminated
    bench.write_text("".join(json.dumps({"text": text}) + "\n" for text in sample_texts()[4:8:3]))
    runs = [(1, 2048), (2, 2048), (2, 3), (2, 2048)]
    snapshots = []
    for i, (threads, chunk) in enumerate(runs):
        _run(tmp_path / f"out{i}", threads, chunk, bench)
        snapshots.append(_snapshot(tmp_path / f"out{i}"))
    assert len(snapshots[0]) == 9  # 6 shards, 2 tables, the manifest
    screened = json.loads(snapshots[0]["manifest.json"])["inputs"][0]["screened"]
    assert screened["duplicate"] > 0 and screened["contaminated"] > 0
    for other in snapshots[1:]:
        assert other.keys() == snapshots[0].keys()
        assert [k for k in other if other[k] != snapshots[0][k]] == []
