"""N processes preparing the same output at once (N ranks of a launcher) build it once; the others
wait and reuse the result."""

from __future__ import annotations

import json
import subprocess
import sys

from dataprep import locking
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER


def test_four_processes_build_once(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "dataprep", "prepare", "--data", str(SAMPLE), "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(out), "--json"]
    # Hold the build lock ourselves until all four are provably queued behind it.
    with locking.exclusive(out, on_wait=lambda _: None):
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for p in procs:
            assert "waiting for another dataprep" in p.stderr.readline()
    results = [(p.stdout.read(), p.stderr.read(), p.wait(timeout=300)) for p in procs]
    assert [rc for _, _, rc in results] == [0, 0, 0, 0], [err for _, err, _ in results]
    payloads = [json.loads(stdout) for stdout, _, _ in results]
    assert sorted(p["reused"] for p in payloads) == [False, True, True, True]
    assert len({p["content_sha256"] for p in payloads}) == 1
    assert json.loads((out / "manifest.json").read_text())["content_sha256"] == payloads[0]["content_sha256"]
    assert not list(out.glob(".staging-*"))
