"""The Python API: dataprep.prepare(...) with the CLI's options, dataprep.open(DIR), and each view of a
part (table, to_polars, lazy, to_hf, torch, decode), against the shards and the manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import dataprep
from dataprep.format import read_shard
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dataprep.Prepared:
    out = tmp_path_factory.mktemp("api") / "out"
    return dataprep.prepare(data=str(SAMPLE), tokenizer=str(SAMPLE_TOKENIZER), out=out, split="6,2,2", progress=False)


def shard_rows(d: dataprep.Prepared, phase, side: str) -> pa.Table:
    """The part's rows read shard by shard through the contract, for comparison."""
    return pa.concat_tables([read_shard(d.out / s["file"]) for s in d.manifest.part(phase, side)["shards"]])


def test_prepare_takes_the_cli_options_and_returns_the_opened_output(prepared, tmp_path):
    assert isinstance(prepared, dataprep.Prepared) and not prepared.reused
    assert prepared.parts() == [(p, s) for p in (1, 2, 3) for s in ("train", "eval")]
    # The same options through the command line give the same cache key (so the same bytes).
    cli = subprocess.run([sys.executable, "-m", "dataprep", "prepare", "--data", str(SAMPLE), "--tokenizer", str(SAMPLE_TOKENIZER),
                          "--split", "6,2,2", "--out", str(tmp_path / "cli"), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout)["cache_key"] == prepared.manifest["cache_key"]
    again = dataprep.prepare(dataprep.PrepareOptions(data=[str(SAMPLE)], tokenizer=str(SAMPLE_TOKENIZER), out=prepared.out, progress=False),
                             split="6,2,2")
    assert again.reused and again.manifest["phases"] == prepared.manifest["phases"]


def test_open_reads_the_manifest_and_refuses_what_is_not_a_finished_output(prepared, tmp_path):
    d = dataprep.open(prepared.out)
    assert d.manifest.tokenizer.eos_id == prepared.manifest.tokenizer.eos_id and "phases" in d.manifest
    with pytest.raises(dataprep.DataprepError, match="no manifest"):
        dataprep.open(tmp_path)
    edited = tmp_path / "edited"
    shutil.copytree(prepared.out, edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["phases"]["1"]["train"]["kept"] += 1
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(dataprep.DataprepError, match="edited after prepare"):
        dataprep.open(edited)


def test_table_is_the_shards_rows_without_a_copy(prepared):
    allocated = pa.total_allocated_bytes()
    view = prepared.phase(2, "train")
    table = view.table
    assert pa.total_allocated_bytes() == allocated  # memory-mapped: nothing from Arrow's memory pool
    assert table.equals(shard_rows(prepared, 2, "train"))
    assert len(view) == table.num_rows == prepared.manifest["phases"]["2"]["train"]["kept"]
    with pytest.raises(dataprep.DataprepError, match="lists no phase2"):
        dataprep.open(prepared.out).phase(2, "test")


def test_to_polars_shares_the_token_buffers(prepared):
    view = prepared.phase(1, "train")
    df = view.to_polars()
    assert df["input_ids"].to_list() == view.table.column("input_ids").to_pylist()
    assert df["row_id"].to_list() == view.table.column("row_id").to_pylist()
    # polars hands its buffers back to Arrow as they are: the same token values and row ids in the mapped file.
    back = df.to_arrow()
    for name, buffer_of in (("input_ids", lambda c: c.values.buffers()[1]), ("row_id", lambda c: c.buffers()[1])):
        assert buffer_of(back.column(name).chunk(0)).address == buffer_of(view.table.column(name).chunk(0)).address


def test_lazy_computes_over_the_shards(prepared):
    view = prepared.phase(2, "eval")
    totals = view.lazy().select(pl.col("chosen_input_ids").list.len().sum(), pl.col("rejected_input_ids").list.len().sum()).collect()
    tokens = prepared.manifest["phases"]["2"]["eval"]["tokens"]
    assert totals.row(0) == (tokens["chosen_input_ids"]["total"], tokens["rejected_input_ids"]["total"])


def test_to_hf_is_a_dataset_over_the_same_buffers(prepared):
    datasets = pytest.importorskip("datasets", reason="HF datasets is the optional extra rlhfkit-dataprep[hf]")
    view = prepared.phase(2, "train")
    ds = view.to_hf()
    assert isinstance(ds, datasets.Dataset) and len(ds) == len(view)
    assert ds.column_names == view.table.column_names
    assert ds[3] == {name: view.table.column(name)[3].as_py() for name in view.table.column_names}
    assert ds.features["chosen_input_ids"].feature.dtype == "uint16"
    values = lambda t: t.column("chosen_input_ids").chunk(0).values.buffers()[1].address  # noqa: E731
    assert values(ds.data.table) == values(view.table)
    # Its fingerprint comes from the shards' hashes: stable, and another part's differs.
    assert ds._fingerprint == prepared.phase(2, "train").to_hf()._fingerprint != prepared.phase(2, "eval").to_hf()._fingerprint
    lengths = ds.with_format("numpy").map(lambda row: {"n": len(row["chosen_input_ids"])})["n"]
    assert list(lengths) == view.table.column("chosen_input_ids").combine_chunks().value_lengths().to_pylist()


def test_torch_is_the_trainers_dataset(prepared):
    pytest.importorskip("trainer.shard_dataset", reason="torch() needs the trainer package (rlhfkit-trainer)")
    torch = pytest.importorskip("torch")
    from trainer.shard_dataset import ShardDataset

    view = prepared.phase(1, "eval")
    ds = view.torch()
    assert isinstance(ds, ShardDataset) and len(ds) == len(view)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=list)))
    for i, row in enumerate(batch):
        assert row["input_ids"].tolist() == view.table.column("input_ids")[i].as_py()
        assert row["row_id"] == view.table.column("row_id")[i].as_py()


def test_decode_gives_the_rows_text(prepared):
    view = prepared.phase(1, "train")
    normalized = read_shard(prepared.out / "normalized" / "sample-hh.arrow").to_pylist()
    text = {(r["source"], r["row_id"]): r["prompt"] + r["chosen"] for r in normalized}
    lengths = view.table.column("input_ids").combine_chunks().value_lengths().to_numpy()
    whole = [i for i in np.flatnonzero(lengths < prepared.manifest.max_seq_len)[:5].tolist()]  # not cut at the limit
    for i in whole:
        key = (view.table.column("source")[i].as_py(), view.table.column("row_id")[i].as_py())
        assert view.decode(i) == {"input_ids": text[key] + "<|endoftext|>"}
    pair = prepared.phase(2, "train").decode(-1)
    assert set(pair) == {"chosen_input_ids", "rejected_input_ids"} and pair["chosen_input_ids"] != pair["rejected_input_ids"]
    with pytest.raises(IndexError, match="out of range"):
        view.decode(len(view))


def test_decode_refuses_a_tokenizer_that_changed(tmp_path, bpe_json):
    tokenizer = tmp_path / "tokenizer.json"
    shutil.copy(SAMPLE_TOKENIZER, tokenizer)
    d = dataprep.prepare(data=[SAMPLE], tokenizer=str(tokenizer), out=tmp_path / "out", progress=False)
    assert d.phase(3, "eval").decode(0)["prompt_input_ids"].startswith("\n\nHuman:")
    shutil.copy(bpe_json, tokenizer)  # another vocabulary at the path the manifest records
    with pytest.raises(dataprep.DataprepError, match="has changed since"):
        dataprep.open(d.out).phase(3, "eval").decode(0)
