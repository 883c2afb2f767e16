"""manifest.json: what went in, every option, what came out, and the cache key that ties them.

The cache key is a sha256 over the input files' contents (and hub revision), their sides and source
labels, the tokenizer fingerprint, the tokenizer libraries' versions, every option that changes the
output, and the format version. Never a name: a changed byte anywhere rebuilds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

from dataprep import FORMAT_VERSION
from dataprep.errors import DataprepError
from dataprep.shards import file_sha256
from dataprep.sources import Dataset
from dataprep.tokenizer import Tokenizer

NAME = "manifest.json"
_LIBRARIES = ("pyarrow", "tokenizers", "transformers", "sentencepiece")


def describe_inputs(dataset: Dataset) -> dict:
    return {
        "name": dataset.name,
        "origin": dataset.origin,
        "revision": dataset.revision,
        "files": [
            {
                "path": str(f.path),
                "side": f.side,
                "source": f.source,
                "bytes": f.path.stat().st_size,
                "sha256": file_sha256(f.path),
            }
            for f in dataset.files
        ],
        "rows": {},
        "carve": None,
        "split": {},
        "unused_rows": {},
    }


def cache_key(inputs: list[dict], tokenizer: Tokenizer, options: dict) -> str:
    material = {
        "format_version": FORMAT_VERSION,
        "inputs": [
            {
                "name": d["name"],
                "revision": d["revision"],
                "files": [[f["side"], f["source"], f["sha256"]] for f in d["files"]],
            }
            for d in inputs
        ],
        "tokenizer": tokenizer.fingerprint,
        "libraries": {lib: _version(lib) for lib in _LIBRARIES},
        "options": options,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _version(lib: str) -> str | None:
    try:
        return importlib_metadata.version(lib)
    except importlib_metadata.PackageNotFoundError:
        return None


def build(*, key: str, version: str, format_version: int, options: dict, tokenizer: dict, inputs: list[dict], phases: dict, tables: dict) -> dict:
    return {
        "format_version": format_version,
        "dataprep_version": version,
        "cache_key": key,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "options": options,
        "tokenizer": tokenizer,
        "libraries": {lib: _version(lib) for lib in _LIBRARIES},
        "inputs": inputs,
        "phases": phases,
        "tables": tables,
    }


def read(out: Path) -> dict:
    path = out / NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataprepError(f"{path}: no manifest; this is not a finished `dataprep prepare` output") from None
    except json.JSONDecodeError as exc:
        raise DataprepError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def is_complete(out: Path, key: str) -> bool:
    """True when `out` holds a finished build with this key and every file it lists, at its size."""
    try:
        manifest = json.loads((out / NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("cache_key") != key:
        return False
    for side_info in (s for phase in manifest.get("phases", {}).values() for s in phase.values()):
        for shard in side_info["shards"]:
            path = out / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["bytes"]:
                return False
    return all((out / t).is_file() for tables in manifest.get("tables", {}).values() for t in tables)


def commit(staging: Path, out: Path, manifest: dict, subdirs: tuple[str, ...]) -> None:
    """Move a finished build from `staging` into `out`. The old manifest goes first and the new one
    comes last, so at every instant `out` either has no manifest or a manifest whose files are there."""
    (out / NAME).unlink(missing_ok=True)
    for sub in subdirs:
        target = out / sub
        if target.exists():
            trash = staging / f".old-{sub}"
            os.replace(target, trash)
            shutil.rmtree(trash)
        if (staging / sub).exists():  # phases with weight 0 are not built
            os.replace(staging / sub, target)
    tmp = staging / NAME
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, out / NAME)
