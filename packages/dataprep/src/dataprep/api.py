"""The Python API over a prepared directory: `dataprep.open(DIR)` and `dataprep.prepare(...)`.

    d = dataprep.open("out/hh")       # the manifest, read and its seal checked
    view = d.phase(2, "train")        # the part's shards, checked against the manifest and memory-mapped
    view.table                        # pyarrow.Table over the mapped files (zero copy)
    view.to_polars()                  # polars.DataFrame over the same buffers (see to_polars for what copies)
    view.to_hf()                      # datasets.Dataset over the same buffers (no tokenizing, no cache file)
    view.torch()                      # the trainer's dataset (trainer.shard_dataset.ShardDataset)
    view.decode(0)                    # {"chosen_input_ids": "...", "rejected_input_ids": "..."}

Everything stands on the shard contract (format.py). The optional parts load only when asked for:
HF datasets (extra `rlhfkit-dataprep[hf]`) in to_hf, the trainer package in torch(). dataprep itself
never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dataprep.errors import DataprepError
from dataprep.format import TOKEN_COLUMNS, Manifest, Part, Shards, open_shards, part_dir, schema, sha256_json, token_type
from dataprep.options import PrepareOptions
from dataprep.tokenizer import Tokenizer, load_recorded

if TYPE_CHECKING:
    import datasets
    import polars as pl
    from trainer.shard_dataset import ShardDataset

# PrepareOptions fields that list datasets or files: a lone string (or path) is one of them, not its characters.
_LISTS = ("data", "sft_only_data", "unsup")


class Prepared:
    """A finished `dataprep prepare` output: its manifest and a view of each part it built."""

    def __init__(self, manifest: Manifest, reused: bool = False):
        self.manifest = manifest
        self.reused = reused  # prepare(...) found the output up to date and did not rebuild it

    @property
    def out(self) -> Path:
        return self.manifest.out

    def parts(self) -> list[tuple[Part, str]]:
        """(phase, side) of every part built: phases 1-3 by side, then ("unsup", "train") with --unsup."""
        return [(part, side) for part, side, _ in self.manifest.parts()]

    def phase(self, phase: Part, side: str = "train", verify: bool = True) -> PhaseView:
        """One part's shards, checked against the manifest (listed, size, schema, metadata, rows; with
        `verify`, their sha256 too, about a second per GB read) and memory-mapped."""
        return PhaseView(open_shards(self.out, phase, side, hashed=verify))

    def __repr__(self) -> str:
        rows = ", ".join(f"{part_dir(p)} {s} {sum(r['rows'] for r in info['shards'])}" for p, s, info in self.manifest.parts())
        return f"Prepared({str(self.out)!r}: {rows} rows)"


class PhaseView:
    """One phase (1, 2, 3 or "unsup") and side of a prepared directory, over its memory-mapped shards."""

    def __init__(self, shards: Shards):
        self.shards = shards

    @property
    def phase(self) -> Part:
        return self.shards.part

    @property
    def side(self) -> str:
        return self.shards.side

    @property
    def manifest(self) -> Manifest:
        return self.shards.manifest

    def __len__(self) -> int:
        return self.shards.num_rows

    def __repr__(self) -> str:
        return f"PhaseView({str(self.manifest.out)!r}, {part_dir(self.phase)} {self.side}: {len(self)} rows)"

    @cached_property
    def table(self) -> pa.Table:
        """The part's rows as one pyarrow.Table: each shard's record batches are chunks of it, pointing
        into the mapped files (nothing is copied)."""
        tables = self.shards.tables
        if not tables:  # every row was dropped: no shard was written
            return schema(self.phase, token_type(self.manifest.tokenizer.vocab_size)).empty_table()
        return pa.concat_tables(tables)

    def to_polars(self) -> pl.DataFrame:
        """The table as a polars.DataFrame, one chunk per record batch. Polars takes the numbers and the
        token values without copying; it widens list offsets to 64 bits (8 bytes a row and token column)
        and re-encodes the short `source` strings. bench/interop.py measures it."""
        import polars as pl

        return pl.from_arrow(self.table, rechunk=False)

    def lazy(self) -> pl.LazyFrame:
        """A polars LazyFrame over the mapped buffers, for statistics over any number of rows without
        the token lists ever becoming Python objects: `view.lazy().select(pl.col("input_ids").list.len().mean())`."""
        return self.to_polars().lazy()

    def to_hf(self) -> datasets.Dataset:
        """A datasets.Dataset over the same mapped buffers: no tokenizing, no copy, no cache file. Its
        fingerprint comes from the shards' sha256s, which spares HF hashing every row (it pickles the
        whole table to fingerprint a table it did not load itself). As for any in-memory HF dataset,
        `map(num_proc=N)` and spawned workers receive pickled copies of the rows they are sent.
        Needs HF datasets (`pip install 'rlhfkit-dataprep[hf]'`)."""
        try:
            import datasets
            from datasets.table import InMemoryTable
        except ImportError:
            raise DataprepError("to_hf() needs HF datasets: pip install 'rlhfkit-dataprep[hf]'") from None
        record = self.manifest.part(self.phase, self.side)
        fingerprint = sha256_json({"part": part_dir(self.phase), "side": self.side, "shards": [s["sha256"] for s in record["shards"]]})
        return datasets.Dataset(InMemoryTable(self.table), fingerprint=fingerprint)

    def torch(self) -> ShardDataset:
        """The trainer's dataset over these shards: row i as numpy views into the mapped files, for a
        torch DataLoader. Needs the trainer package (`pip install rlhfkit-trainer`, which brings torch)."""
        try:
            from trainer.shard_dataset import ShardDataset
        except ImportError:
            raise DataprepError("torch() needs the trainer package: pip install rlhfkit-trainer (it brings torch)") from None
        # The shards were checked when this view opened them (with their sha256 if asked): not again.
        return ShardDataset(self.manifest.out, self.phase, self.side, verify=False)

    def decode(self, i: int) -> dict[str, str]:
        """Row i as text, one entry per token column, decoded with the tokenizer the manifest records
        (refused if it no longer has the fingerprint the shards were made with)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows of {part_dir(self.phase)} {self.side}")
        return {name: self._tokenizer.decode(self.table.column(name)[i % n].as_py()) for name in TOKEN_COLUMNS[self.phase]}

    @cached_property
    def _tokenizer(self) -> Tokenizer:
        return load_recorded(self.manifest)


def open(out: str | os.PathLike) -> Prepared:  # noqa: A001 (dataprep.open, like io.open, opens what it names)
    """A finished `dataprep prepare` output. Refuses a directory without a manifest (unfinished or not an
    output) and an edited manifest; each part's shards are checked when `phase()` opens them."""
    manifest = Manifest.read(out)
    manifest.require_sealed()
    return Prepared(manifest)


def prepare(options: PrepareOptions | None = None, /, **fields) -> Prepared:
    """`dataprep prepare` from Python, returning the opened output. Pass a PrepareOptions, or its fields
    as keywords (the CLI's options: `data=`, `tokenizer=`, `out=`, `split=`, ...), or both (the keywords
    override). An up-to-date output is reused, as on the command line (`.reused` says so)."""
    for name in _LISTS:
        if name in fields:
            value = fields[name]
            fields[name] = [str(v) for v in ([value] if isinstance(value, (str, os.PathLike)) else value)]
    opts = replace(options, **fields) if options is not None else PrepareOptions(**fields)
    from dataprep import pipeline  # the whole of prepare: loaded by those who run it, not by open()

    result = pipeline.prepare(opts)
    return Prepared(Manifest(result.out, result.manifest), reused=result.reused)
