"""dataprep: RLHF preference data -> canonical Arrow tables -> DeepSpeed-Chat compatible splits ->
memory-mapped token shards with a manifest. Never imports torch.

The public API is this package's top level and `dataprep.format` (the shard contract):

    import dataprep
    result = dataprep.prepare(dataprep.PrepareOptions(data=["hh"], tokenizer="gpt2", out="out/hh"))
    shards = dataprep.open_shards("out/hh", 1, "train")     # checked, memory-mapped Arrow tables
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
    "prepare": "dataprep.pipeline",
    "Tokenizer": "dataprep.tokenizer",
    "load_tokenizer": "dataprep.tokenizer",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from dataprep.errors import DataprepError
    from dataprep.format import FORMAT_VERSION, Manifest, Shards, open_shards
    from dataprep.options import PrepareOptions
    from dataprep.pipeline import Result, prepare
    from dataprep.tokenizer import Tokenizer, load_tokenizer


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dataprep' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
