"""The trainer's shard reader returns the rows dataprep wrote, as views of the mapped files."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from dataprep import shards
from dataprep.errors import DataprepError
from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER
from trainer.shard_dataset import ShardDataset


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    # Small record batches and a tiny shard budget: several shards and batches per phase, so rows
    # cross batch and shard boundaries.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shards, "ROWS_PER_BATCH", 16)
        prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="6,2,2", shard_bytes=8_000, progress=False))
    return out


@pytest.mark.parametrize("phase, column", [(1, "input_ids"), (2, "rejected_input_ids"), (3, "prompt_input_ids")])
def test_rows_match_the_shards(out, phase, column):
    paths = sorted((out / f"phase{phase}").glob("train-*.arrow"))
    assert len(paths) > 1
    table = pa.concat_tables(pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in paths)
    ds = ShardDataset(out, phase, "train")
    assert len(ds) == table.num_rows
    before = pa.total_allocated_bytes()
    for i in (0, 1, len(ds) // 2, len(ds) - 1, -1):
        row = ds[i]
        assert row[column].tolist() == table.column(column)[i].as_py()
        assert row["row_id"] == table.column("row_id")[i].as_py()
        assert row[column].base is not None, "a view, not a copy"
    assert pa.total_allocated_bytes() == before
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_refuses_what_is_not_a_finished_build(out, tmp_path):
    with pytest.raises(DataprepError, match="no manifest"):
        ShardDataset(tmp_path, 1)
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    first, second = sorted((damaged / "phase1").glob("train-*.arrow"))[:2]
    extra = damaged / "phase1" / "train-00099-of-00099.arrow"
    shutil.copy(first, extra)
    with pytest.raises(DataprepError, match="extra shard"):
        ShardDataset(damaged, 1)
    extra.unlink()
    second.write_bytes(second.read_bytes()[:-100])
    with pytest.raises(DataprepError, match=f"{second.name}: .* bytes but manifest.json says"):
        ShardDataset(damaged, 1)
