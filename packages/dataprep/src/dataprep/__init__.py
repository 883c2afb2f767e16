"""dataprep: RLHF preference data -> canonical Arrow tables -> DeepSpeed-Chat compatible splits ->
memory-mapped token shards with a manifest. Never imports torch.

The public API is this package's top level (api.py) and `dataprep.format` (the shard contract):

    import dataprep
    d = dataprep.prepare(data=["hh"], tokenizer="gpt2", out="out/hh")   # or dataprep.open("out/hh")
    d.phase(2, "train").to_polars()     # also .table (pyarrow), .to_hf(), .torch(), .decode(i)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Re-exports, loaded on first use: `dataprep --help` must not pay for pyarrow, numpy and the tokenizers.
_EXPORTS = {
    "DataprepError": "dataprep.errors",
    "FORMAT_VERSION": "dataprep.format",
    "Manifest": "dataprep.format",
    "Shards": "dataprep.format",
    "open_shards": "dataprep.format",
    "PrepareOptions": "dataprep.options",
    "Result": "dataprep.pipeline",
    "open": "dataprep.api",
    "prepare": "dataprep.api",
    "Prepared": "dataprep.api",
    "PhaseView": "dataprep.api",
    "Tokenizer": "dataprep.tokenizer",
    "load_tokenizer": "dataprep.tokenizer",
}
# `open` stays out of `from dataprep import *`, which would shadow the builtin.
__all__ = ["__version__", *(name for name in _EXPORTS if name != "open")]

if TYPE_CHECKING:
    from dataprep.errors import DataprepError
    from dataprep.format import FORMAT_VERSION, Manifest, Shards, open_shards
    from dataprep.options import PrepareOptions
    from dataprep.api import PhaseView, Prepared, open, prepare
    from dataprep.pipeline import Result
    from dataprep.tokenizer import Tokenizer, load_tokenizer


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dataprep' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
