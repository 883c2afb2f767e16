"""Files of a registered dataset: a local copy in the native layout (--data-dir, or a path ending in
the hub id), or a download from the Hugging Face Hub pinned to the resolved commit.

A file's side comes from its split name, a token of its path ("askculinary/validation.json",
"data/train-00000-of-00001.parquet", "all/train/0000.parquet"): the spec's train names are the train
side, its eval names the eval side, other splits (SHP's test, say) are not read.

Stage 1 of prepare (resolve)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dataprep import readers
from dataprep.errors import DataprepError
from dataprep.sources.dataset import Dataset, InputFile
from dataprep.sources.local import sources
from dataprep.sources.spec import Spec

DATA_PATTERNS = ["*.parquet", "*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz"]
PARQUET_REF = "refs/convert/parquet"  # the hub's auto-converted parquet of a repo with a loading script


def resolve(spec: Spec, data_dir: Path | None, revision: str | None) -> Dataset:
    if data_dir is not None:
        root = local_root(spec, data_dir.expanduser())
        return from_dir(spec, root, origin=str(root))
    if spec.hub_id is None:
        raise DataprepError(f"{spec.name}: not on the hub; pass --data-dir DIR holding its {_expected(spec)} files")
    root = _download(spec, revision)
    return from_dir(spec, root, origin=spec.hub_id, revision=root.name)


def local_root(spec: Spec, data_dir: Path) -> Path:
    """DIR/<hub id> or DIR/<name> when present (one --data-dir for several datasets), else DIR itself."""
    if not data_dir.is_dir():
        raise DataprepError(f"--data-dir {data_dir}: no such directory")
    for sub in filter(None, (spec.hub_id, spec.name)):
        if (data_dir / sub).is_dir():
            return data_dir / sub
    return data_dir


def side_of(spec: Spec, rel: Path) -> str | None:
    tokens = set(re.split(r"[/.\-]", rel.as_posix().lower()))
    if tokens & {s.lower() for s in spec.eval}:
        return "eval"
    if tokens & {s.lower() for s in spec.train}:
        return "train"
    return None


def from_dir(spec: Spec, root: Path, origin: str, revision: str | None = None) -> Dataset:
    sided = [(path, side_of(spec, path.relative_to(root))) for path in readers.data_files(root)]
    sided = [(path, side) for path, side in sided if side is not None]
    labels = sources(spec.name, [path.relative_to(root) for path, _ in sided])
    files = [InputFile(path, side, source) for (path, side), source in zip(sided, labels)]
    if not files:
        raise DataprepError(f"{spec.name}: no {_expected(spec)} data files under {root}; "
                            f"download them from {_url(spec)} (native layout) into that directory")
    return Dataset(spec.name, tuple(files), origin=origin, revision=revision, adapter=spec.adapter.name)


def _expected(spec: Spec) -> str:
    if spec.layout:
        return spec.layout
    splits = "/".join(spec.train + spec.eval)
    return f"{splits} ({', '.join(s.lstrip('*') for s in DATA_PATTERNS)})"


def _url(spec: Spec) -> str:
    if spec.hub_id is None:
        return "your own copy"
    if spec.parquet_config:
        return f"https://huggingface.co/datasets/{spec.hub_id}/tree/refs%2Fconvert%2Fparquet/{spec.parquet_config}"
    return f"https://huggingface.co/datasets/{spec.hub_id}"


def _download(spec: Spec, revision: str | None) -> Path:
    if spec.parquet_config:
        patterns, ref = [f"{spec.parquet_config}/*"], revision or PARQUET_REF
    else:
        patterns, ref = list(spec.hub_files) or DATA_PATTERNS, revision
    return snapshot(spec.hub_id, ref, patterns, f"{spec.name}: cannot download {spec.hub_id} ({{why}}); fetch its "
                    f"{_expected(spec)} files from {_url(spec)} into DIR and pass --data-dir DIR")


def snapshot(hub_id: str, revision: str | None, patterns: list[str], failure: str) -> Path:
    """A dataset repo's matching files from the hub (cached). Any failure (offline, unknown revision,
    auth) ends the same way for the user: one line, `failure` with {why} filled in."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except Exception as exc:
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else type(exc).__name__
        raise DataprepError(failure.replace("{why}", why)) from None
