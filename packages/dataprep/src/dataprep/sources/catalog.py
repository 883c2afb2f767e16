"""Every registered dataset (one Spec each, from its adapter module) and every adapter by name.

`hh` (Anthropic/hh-rlhf) keeps its own resolver in hh.py; it is listed here for `dataprep datasets`."""

from __future__ import annotations

from functools import lru_cache

from dataprep.sources.spec import Adapter, Spec


@lru_cache(maxsize=1)
def specs() -> tuple[Spec, ...]:
    from dataprep.sources import dahoas, hc3, jaquad, local, miracl, mkqa, sharegpt, shp, ultrafeedback, webgpt, yitingxie, zhihu

    modules = (dahoas, yitingxie, webgpt, shp, sharegpt, local, zhihu, miracl, hc3, mkqa, jaquad, ultrafeedback)
    return tuple(spec for module in modules for spec in module.SPECS)


@lru_cache(maxsize=1)
def hh_adapter() -> Adapter:
    from dataprep.sources import hh

    return Adapter(hh.NAME, ("chosen", "rejected"), ("chosen", "rejected"), ("chosen", "rejected"), (1, 2, 3),
                   'prompt = dialogue up to its last "\\n\\nAssistant:", chosen/rejected = the rest', lambda opts: hh.normalize)


@lru_cache(maxsize=1)
def adapters() -> dict[str, Adapter]:
    from dataprep.sources import chat

    found = {hh_adapter().name: hh_adapter(), chat.PAIRS.name: chat.PAIRS, chat.MESSAGES.name: chat.MESSAGES}
    for spec in specs():
        found.setdefault(spec.adapter.name, spec.adapter)
    return found


def ambiguous_hub_ids() -> dict[str, list[str]]:
    """Hub ids read by several specs (mkqa: one per language): they resolve only by name."""
    by_id: dict[str, list[str]] = {}
    for spec in specs():
        if spec.hub_id:
            by_id.setdefault(spec.hub_id, []).append(spec.name)
    return {hub_id: names for hub_id, names in by_id.items() if len(names) > 1}


def listing() -> list[dict]:
    """One record per registered dataset, for `dataprep datasets`."""
    from dataprep.sources import hh

    hh_entry = {"name": hh.NAME, "aliases": [], "hub_id": hh.HUB_ID, "native_columns": "chosen, rejected (whole dialogues)",
                "phases": list(hh_adapter().phases), "splits": {"train": ["train"], "eval": ["test"]},
                "formatting": hh_adapter().formatting}
    rows = [hh_entry]
    for spec in specs():
        rows.append({"name": spec.name, "aliases": list(spec.aliases), "hub_id": spec.hub_id, "native_columns": spec.native,
                     "phases": list(spec.adapter.phases), "splits": {"train": list(spec.train), "eval": list(spec.eval)},
                     "formatting": spec.adapter.formatting})
    return rows
