"""`dataprep verify` finds every kind of damage, each with a precise message and a non-zero exit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER

SHARD = "phase2/train-00000-of-00001.arrow"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), progress=False))
    return out


@pytest.fixture
def out(built, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def verify(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", "verify", str(out)], capture_output=True, text=True)


def test_clean_output_verifies(out):
    proc = verify(out)
    assert proc.returncode == 0 and "OK (8 files, 6 shards" in proc.stdout


def _truncate(out):
    path = out / SHARD
    path.write_bytes(path.read_bytes()[:-1000])


def _flip(out):
    path = out / SHARD
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _remove(out):
    (out / SHARD).unlink()


def _extra(out):
    shutil.copy(out / SHARD, out / "phase2" / "train-00001-of-00001.arrow")


def _edit_manifest(out):
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["phases"]["1"]["train"]["dropped"]["identical_pair"] += 1
    manifest["phases"]["1"]["train"]["rows_in"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))


def _edit_table(out):
    path = next((out / "dropped").glob("*.arrow"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, SHARD + r": \d+ bytes but manifest.json says \d+ \(truncated or rewritten\)"),
        (_flip, SHARD + r": (sha256 .* but manifest.json says .* \(the bytes changed\)|corrupt shard)"),
        (_remove, SHARD + r": missing \(listed in manifest.json\)"),
        (_extra, r"phase2/train-00001-of-00001.arrow: extra file, not listed in manifest.json"),
        (_edit_manifest, r"manifest.json: edited after it was written \(content hash mismatch\)"),
        (_edit_table, r"dropped/sample-hh.arrow: sha256 .* \(the bytes changed\)"),
    ],
    ids=["truncated", "flipped-byte", "missing-shard", "extra-shard", "edited-manifest", "edited-table"],
)
def test_damage_is_reported(out, damage, message):
    damage(out)
    proc = verify(out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


def test_no_manifest(out):
    (out / "manifest.json").unlink()
    proc = verify(out)
    assert proc.returncode == 2 and "no manifest" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_json_report(out):
    _flip(out)
    proc = subprocess.run([sys.executable, "-m", "dataprep", "verify", str(out), "--json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and len(report["problems"]) >= 1
