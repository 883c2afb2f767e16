"""Stage 6 of prepare, seal: the manifest from what every stage returned, its content hash, and the
commit that moves a finished build into place. Also the reuse check (an up-to-date output with the
same cache key). The read side of the manifest is format.Manifest.

`content_sha256` is a sha256 over the manifest itself (all but the `run` section, which holds the
timestamp and duration), so an edited manifest is detected by `dataprep verify`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dataprep import __version__, faults
from dataprep.decontaminate import Benchmark
from dataprep.format import FORMAT_VERSION, MANIFEST, Manifest, content_hash, token_type
from dataprep.inputs import Inputs, libraries
from dataprep.plan import DatasetSplit, SplitPlan
from dataprep.pool import Pool
from dataprep.write import PartResult


def assemble(inputs: Inputs, pools: list[Pool], plan: SplitPlan, parts: dict[tuple[int, str], PartResult], overlap: dict,
             tables: list[dict], unsup: dict | None, benchmark: Benchmark | None = None) -> dict:
    """The manifest's content: what went in, every option, and what came out."""
    opts, tokenizer = inputs.options, inputs.tokenizer
    phases: dict[str, dict] = {}
    for (phase, side), result in parts.items():
        phases.setdefault(str(phase), {})[side] = result.record()
    manifest = {
        "format_version": FORMAT_VERSION,
        "dataprep_version": __version__,
        "cache_key": inputs.cache_key,
        "options": {"data": list(opts.data), "data_dir": opts.data_dir and str(opts.data_dir), "revision": opts.revision,
                    "tokenizer": opts.tokenizer, **inputs.key_options},
        "tokenizer": {**tokenizer.describe(), "token_type": str(token_type(tokenizer.vocab_size))},
        "libraries": libraries(),
        "inputs": [_input_record(d.record(), d.role, pool, split) for d, pool, split in zip(inputs.datasets, pools, plan.datasets)],
        "phases": phases,
        "prompt_overlap": overlap,
        "tables": {sub: sorted((t for t in tables if t["file"].startswith(sub + "/")), key=lambda t: t["file"])
                   for sub in ("normalized", "dropped")},
    }
    if unsup is not None:
        manifest["unsup"] = unsup
    if benchmark is not None:
        manifest["decontaminate"] = benchmark.record()
    return manifest


def _input_record(record: dict, role: str, pool: Pool, split: DatasetSplit) -> dict:
    """One dataset's record: its files with their row and drop counts, then how it was split."""
    files = [{**f, "rows": counts.rows, "dropped": counts.dropped, **({"adapter": counts.adapter} if counts.adapter else {}),
              **({"ranking": counts.ranking.record()} if counts.ranking else {})}
             for f, counts in zip(record["files"], pool.files)]
    sides = pool.side_rows()
    out = {**record, "files": files, "rows": {side: len(rows) for side, rows in sides.items()},
           "carve": split.carve.record() if split.carve else None,
           "split": {side: split.rows(side) for side in split.parts}, "unused_rows": {side: split.unused(side) for side in split.parts},
           "screened": pool.screened.counts() if pool.screened is not None else {}, "role": role}
    if split.groups is not None:
        out["groups"] = split.groups.record()
    rankings = [counts.ranking for counts in pool.files if counts.ranking]
    if rankings:  # responses in, pairs out: a ranking dataset's rows are its pairs (sources/ranking.py)
        out["ranking"] = sum(rankings[1:], rankings[0]).record()
    return out


def seal(manifest: dict, run: dict) -> dict:
    """Add the content hash, then the unhashed `run` section (time and duration)."""
    manifest["content_sha256"] = content_hash(manifest)
    manifest["run"] = run
    return manifest


def is_complete(out: Path, key: str) -> bool:
    """True when OUT holds a sealed build with this key and every file it lists, at its size."""
    try:
        manifest = Manifest(out, json.loads((out / MANIFEST).read_text()))
        if manifest.data.get("cache_key") != key or not manifest.sealed:
            return False
        return all((out / f["file"]).is_file() and (out / f["file"]).stat().st_size == f["bytes"] for f in manifest.files())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def commit(staging: Path, out: Path, manifest: dict, subdirs: tuple[str, ...]) -> None:
    """Move a finished build from `staging` into `out`. The old manifest goes first and the new one
    comes last, so at every instant `out` either has no manifest or a manifest whose files are there."""
    (out / MANIFEST).unlink(missing_ok=True)
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
    tmp = staging / MANIFEST
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
