"""manifest.json: what went in, every option, what came out, and the keys that tie them together.

`cache_key` is a sha256 over the input files' contents (and hub revision), their sides and source
labels, the adapters' versions, the tokenizer fingerprint, the tokenizer libraries' versions, every
option that changes the output, and the format version: never a name, so a changed byte anywhere
rebuilds. `content_sha256` is a sha256 over the manifest itself (all but the `run` section, which
holds the timestamp and duration), so an edited manifest is detected by `dataprep verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path

from dataprep import FORMAT_VERSION, faults
from dataprep.errors import DataprepError
from dataprep.shards import file_sha256
from dataprep.sources import ADAPTER_VERSIONS, Dataset
from dataprep.tokenizer import Tokenizer

NAME = "manifest.json"
_LIBRARIES = ("pyarrow", "tokenizers", "transformers", "sentencepiece")


def describe_inputs(dataset: Dataset) -> dict:
    files = []
    for f in dataset.files:
        try:
            files.append({"path": str(f.path), "side": f.side, "source": f.source, "bytes": f.path.stat().st_size, "sha256": file_sha256(f.path)})
        except OSError as exc:
            raise DataprepError(f"{f.path}: cannot be read ({exc.strerror})") from None
    return {"name": dataset.name, "origin": dataset.origin, "revision": dataset.revision, "files": files,
            "rows": {}, "carve": None, "split": {}, "unused_rows": {}}


def cache_key(inputs: list[dict], tokenizer: Tokenizer, options: dict) -> str:
    material = {
        "format_version": FORMAT_VERSION,
        "inputs": [
            {"name": d["name"], "revision": d["revision"], "files": [[f["side"], f["source"], f["sha256"]] for f in d["files"]]}
            for d in inputs
        ],
        "adapters": ADAPTER_VERSIONS,
        "tokenizer": tokenizer.fingerprint,
        "libraries": libraries(),
        "options": options,
    }
    return _sha256_json(material)


def libraries() -> dict[str, str | None]:
    found = {}
    for lib in _LIBRARIES:
        try:
            found[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            found[lib] = None
    return found


def _sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def content_hash(manifest: dict) -> str:
    return _sha256_json({k: v for k, v in manifest.items() if k not in ("run", "content_sha256")})


def finish(manifest: dict, run: dict) -> dict:
    """Seal a manifest: add its content hash, then the unhashed `run` section."""
    manifest["content_sha256"] = content_hash(manifest)
    manifest["run"] = run
    return manifest


def read(out: Path) -> dict:
    path = out / NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataprepError(f"{path}: no manifest; {out} is not a finished `dataprep prepare` output (killed or still running? rerun prepare)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataprepError(f"{path}: not valid JSON ({exc}); rerun prepare") from None


def listed_files(manifest: dict) -> list[dict]:
    """Every output file the manifest vouches for: shards and tables, each with file, bytes, sha256."""
    shards = [s for phase in manifest.get("phases", {}).values() for side in phase.values() for s in side["shards"]]
    return shards + [t for tables in manifest.get("tables", {}).values() for t in tables]


def is_complete(out: Path, key: str) -> bool:
    """True when OUT holds a sealed build with this key and every file it lists, at its size."""
    try:
        manifest = json.loads((out / NAME).read_text())
        if manifest.get("cache_key") != key or manifest.get("content_sha256") != content_hash(manifest):
            return False
        return all((out / f["file"]).is_file() and (out / f["file"]).stat().st_size == f["bytes"] for f in listed_files(manifest))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


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
            faults.checkpoint("commit")
    faults.checkpoint("manifest")
    tmp = staging / NAME
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / NAME)


def part_dir(phase: int | str) -> str:
    """The output subdirectory of a part's shards: phase1..phase3, or unsup (phase 3's PTX blocks)."""
    return "unsup" if phase == "unsup" else f"phase{phase}"


def part_listing(manifest: dict, phase: int | str, side: str) -> dict | None:
    """The manifest's record (counts and shards) of one phase and side, or None when it was not built."""
    if phase == "unsup":
        return manifest.get("unsup") if side == "train" else None
    return manifest.get("phases", {}).get(str(phase), {}).get(side)
