"""A run killed with SIGKILL at any moment leaves nothing that prepare, inspect, verify or the
trainer's reader takes for a finished build, and the next run finishes the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataprep import faults
from dataprep.errors import DataprepError
from dataprep.verify import verify
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER, SHARED_HH, GPT2, shared_gpt2, shared_hh
from trainer.shard_dataset import ShardDataset


def _cmd(out: Path, data: Path = SAMPLE, tokenizer: Path = SAMPLE_TOKENIZER, split: str = "2,4,4") -> list[str]:
    return [sys.executable, "-m", "dataprep", "prepare", "--data", str(data), "--tokenizer", str(tokenizer), "--split", split, "--out", str(out), "--quiet"]


def _dataprep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True, text=True)


def assert_complete_or_refused(out: Path) -> bool:
    """Either OUT verifies against its manifest, or every reader refuses it. True if complete."""
    if (out / "manifest.json").exists():
        problems, _ = verify(out)
        assert problems == []
        return True
    for shard in out.glob("phase*/*.arrow"):
        proc = _dataprep("inspect", str(shard))
        assert proc.returncode == 2 and "no manifest" in proc.stderr, proc.stderr
    assert _dataprep("verify", str(out)).returncode == 2
    for phase in (1, 2, 3):
        with pytest.raises(DataprepError, match="no manifest"):
            ShardDataset(out, phase)
    return False


@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_first_build(tmp_path, point):
    out = tmp_path / "out"
    proc = subprocess.run(_cmd(out), env={**os.environ, "DATAPREP_KILL_AT": point}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not assert_complete_or_refused(out)
    if point in ("commit", "manifest"):
        assert list(out.glob("phase*/*.arrow")), "the kill happened with finished shards already in place"
    rerun = _dataprep(*_cmd(out)[3:])
    assert rerun.returncode == 0 and "wrote" in rerun.stdout
    assert assert_complete_or_refused(out)
    assert not list(out.glob(".staging-*"))


@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_rebuild_over_an_old_build(tmp_path, point):
    out = tmp_path / "out"
    assert subprocess.run(_cmd(out, split="6,2,2")).returncode == 0
    proc = subprocess.run(_cmd(out), env={**os.environ, "DATAPREP_KILL_AT": point}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    complete = assert_complete_or_refused(out)
    # Before the commit starts the old build is untouched; once it starts, nothing looks complete.
    assert complete == (point in ("normalized", "shard"))
    if complete:
        assert (out / "manifest.json").read_text().count('"split": "6,2,2"') == 1
    assert _dataprep(*_cmd(out)[3:]).returncode == 0
    assert assert_complete_or_refused(out)


@shared_hh
@shared_gpt2
@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
def test_killed_at_arbitrary_moments(tmp_path, delay):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(out, data=SHARED_HH, tokenizer=GPT2, split="6,2,2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_complete_or_refused(out)
    assert _dataprep(*_cmd(out, data=SHARED_HH, tokenizer=GPT2, split="6,2,2")[3:]).returncode == 0
    assert assert_complete_or_refused(out)
    shutil.rmtree(out)
