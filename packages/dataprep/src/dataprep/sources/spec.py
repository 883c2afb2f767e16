"""The two records behind the registry: an `Adapter` (native rows -> CANONICAL) and a `Spec` (a
registered dataset: names, hub id, which split files are train and eval, and its adapter). Both are
declared with keywords in the dataset's own module.

Stage 1 of prepare resolves datasets by their Spec; stage 2 runs their Adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from dataprep.sources.options import AdapterOptions

# A file's normalizer: built once per file (SHP's per-post cap keeps state across batches).
Normalizer = Callable[[pa.Table], pa.Table]


@dataclass(frozen=True, kw_only=True)
class Adapter:
    name: str
    columns: tuple[str, ...]  # native top-level columns it reads (nested fields are named in `formatting`)
    text_fields: tuple[str, ...]  # top-level string columns: the reader marks other values wrong_type
    required: tuple[str, ...]  # columns a file must have
    phases: tuple[int, ...]  # phases its rows can feed: (1, 2, 3), or (1, 3) for SFT-only data
    formatting: str  # prompt / chosen / rejected, in one line, for `dataprep datasets` and the docs
    make: Callable[[AdapterOptions], Normalizer]
    # Bump whenever the output for the same input changes: it is part of the cache key.
    version: int = 1
    # Native columns holding the chosen and the rejected response's score, read as they are (users'
    # layouts: chosen_score / rejected_score, after --columns). Adapters whose row decides which
    # response is chosen (SHP, WebGPT) set the scores themselves and leave this None.
    scores: tuple[str, str] | None = None
    # A ranking adapter's native list of responses: each row gives several pairs (ranking.py), so the
    # manifest counts the responses read. None for adapters that give one row per native row.
    responses: str | None = None


@dataclass(frozen=True, kw_only=True)
class Spec:
    name: str  # our name: table and source labels
    hub_id: str | None
    adapter: Adapter
    native: str  # the native columns, nested fields included, for `dataprep datasets`
    aliases: tuple[str, ...] = ()  # other --data values (DeepSpeed-Chat's keys)
    train: tuple[str, ...] = ("train",)  # split names (path tokens) of train files
    eval: tuple[str, ...] = ("test",)  # ... of eval files; () = train only, carved 9:1
    parquet_config: str | None = None  # hub repo with a loading script: read its refs/convert/parquet/<config>
    hub_files: tuple[str, ...] = ()  # the hub files to fetch (glob patterns), when not every data file of the repo
    layout: str | None = None  # the native file layout, for messages (default: split names and file types)
