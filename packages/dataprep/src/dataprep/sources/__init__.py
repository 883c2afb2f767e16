"""Where rows come from, and how each file's native rows become canonical (prompt, chosen, rejected).

A `Dataset` is one `--data` argument: a registered name or hub id (catalog.py; `dataprep datasets`
lists them), or a local file or directory. A local dataset's files are sorted by path; a file whose
name contains "test" is the eval side, every other file the train side. A registered dataset's sides
come from its split names (hub.py). Each file goes through one adapter (spec.py, one module per
dataset family) into CANONICAL rows (canonical.py).

Stage 1 of prepare resolves the datasets; stage 2 normalizes their rows.
"""

from dataprep.sources.canonical import iter_canonical
from dataprep.sources.catalog import ADAPTER_VERSIONS, ADAPTERS, SPECS, listing, registered, resolve
from dataprep.sources.dataset import CANONICAL, Dataset, InputFile
from dataprep.sources.spec import Adapter, Spec

__all__ = ["ADAPTERS", "ADAPTER_VERSIONS", "CANONICAL", "SPECS", "Adapter", "Dataset", "InputFile", "Spec", "iter_canonical",
           "listing", "registered", "resolve"]
