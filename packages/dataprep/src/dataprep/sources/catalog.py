"""The registry: every registered dataset (one Spec each, declared in its adapter module), every
adapter by name, and the resolution of a `--data` argument to a Dataset (stage 1 of prepare)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from dataprep import readers
from dataprep.errors import DataprepError
from dataprep.sources import (chat, dahoas, hc3, hh, hub, jaquad, local, miracl, mkqa, ranking, sharegpt, shp, ultrafeedback,
                              ultrafeedback_raw, webgpt, yitingxie, zhihu)
from dataprep.sources.dataset import Dataset
from dataprep.sources.spec import Adapter, Spec

SPECS: tuple[Spec, ...] = tuple(
    spec for module in (hh, dahoas, yitingxie, webgpt, shp, sharegpt, local, zhihu, miracl, hc3, mkqa, jaquad, ultrafeedback, ultrafeedback_raw)
    for spec in module.SPECS
)
# Every adapter by name: the registered datasets' and the chat layouts users' files are told by.
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (chat.PAIRS, chat.MESSAGES, ranking.RANKING, *(spec.adapter for spec in SPECS))}
# Part of the cache key: a changed adapter rebuilds what it fed.
ADAPTER_VERSIONS: dict[str, int] = {name: adapter.version for name, adapter in ADAPTERS.items()}


def ambiguous_hub_ids() -> dict[str, list[str]]:
    """Hub ids read by several specs (mkqa: one per language): they resolve only by name."""
    by_id: dict[str, list[str]] = {}
    for spec in SPECS:
        if spec.hub_id:
            by_id.setdefault(spec.hub_id, []).append(spec.name)
    return {hub_id: names for hub_id, names in by_id.items() if len(names) > 1}


def registered() -> dict[str, Spec]:
    """Every name a registered dataset answers to (its name, aliases and unambiguous hub id) -> its Spec."""
    shared = ambiguous_hub_ids()
    names: dict[str, Spec] = {}
    for spec in SPECS:
        for key in (spec.name, *spec.aliases, spec.hub_id):
            if key and key not in shared:
                names.setdefault(key, spec)
    return names


def resolve(spec: str, data_dir: Path | None = None, revision: str | None = None) -> Dataset:
    """Turn one `--data` argument into a Dataset with its files located (downloading if needed): a
    registered name or hub id, a local copy at a path ending in a hub id, or the user's own files."""
    names = registered()
    if spec in names:
        return hub.resolve(names[spec], data_dir, revision)
    shared = ambiguous_hub_ids()
    if spec in shared:
        raise DataprepError(f"--data {spec}: read as one of {', '.join(shared[spec])}; pass that name instead")
    path = Path(spec).expanduser()
    if path.is_dir():
        # Like DeepSpeed-Chat: a local copy at a path ending in a hub id (/data/Dahoas/rm-static) is that dataset.
        posix = path.resolve().as_posix()
        for known in SPECS:
            if known.hub_id and known.hub_id not in shared and posix.endswith("/" + known.hub_id):
                return hub.from_dir(known, path, origin=str(path))
    if path.exists():
        return local.resolve(path)
    if readers.is_supported(path) or os.sep in spec:  # a path: dataset names would be no help
        raise DataprepError(f"--data {spec}: no such file or directory")
    close = difflib.get_close_matches(spec, list(names), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise DataprepError(f"--data {spec}: not a registered dataset; {hint}registered names: {', '.join(names)} (`dataprep datasets` describes them)")


def listing() -> list[dict]:
    """One record per registered dataset, for `dataprep datasets`."""
    return [{"name": spec.name, "aliases": list(spec.aliases), "hub_id": spec.hub_id, "native_columns": spec.native,
             "phases": list(spec.adapter.phases), "splits": {"train": list(spec.train), "eval": list(spec.eval)},
             "formatting": spec.adapter.formatting} for spec in SPECS]
