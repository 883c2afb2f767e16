"""Anthropic HH-RLHF: each row is two whole dialogues, `chosen` and `rejected`,
"\\n\\nHuman: ...\\n\\nAssistant: ...", that share every turn but the last Assistant reply.

prompt = the dialogue up to and including its last "\\n\\nAssistant:", response = the rest, so that
prompt + response gives back the original text byte for byte. Rows are dropped (and counted) when the
two prompts differ, a response is empty, the two responses are equal, there is no Assistant turn,
or a dialogue is missing (`missing_field`).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dataprep.sources import CANONICAL, Dataset, InputFile, local

NAME = "hh"
HUB_ID = "Anthropic/hh-rlhf"
SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
MARKER = "\n\nAssistant:"


def resolve(data_dir: Path | None, revision: str | None) -> Dataset:
    if data_dir is not None:
        found = local.resolve(data_dir, label=NAME)
        return Dataset(NAME, found.files, origin=str(data_dir), adapter=NAME)
    return _from_hub(revision)


def _from_hub(revision: str | None) -> Dataset:
    patterns = [f"{s}/{split}.jsonl.gz" for s in SUBSETS for split in ("train", "test")]
    from dataprep.sources import hub

    root = hub.snapshot(HUB_ID, revision, patterns,
                        f"hh: cannot download {HUB_ID} ({{why}}); fetch {{{{{','.join(SUBSETS)}}}}}/{{{{train,test}}}}.jsonl.gz "
                        f"from https://huggingface.co/datasets/{HUB_ID} into DIR/<subset>/ and pass --data-dir DIR")
    files = tuple(
        InputFile(root / p, "eval" if p.endswith("test.jsonl.gz") else "train", f"{NAME}/{p.removesuffix('.jsonl.gz')}")
        for p in patterns
        if (root / p).exists()
    )
    return Dataset(NAME, files, origin=HUB_ID, revision=root.name, adapter=NAME)


def split_dialogue(text: str) -> tuple[str, str] | None:
    cut = text.rfind(MARKER)
    if cut < 0:
        return None
    cut += len(MARKER)
    return text[:cut], text[cut:]


def drop_reason(chosen: tuple[str, str] | None, rejected: tuple[str, str] | None) -> str | None:
    if chosen is None or rejected is None:
        return "no_assistant_turn"
    if chosen[0] != rejected[0]:
        return "prompt_mismatch"
    if not chosen[1].strip() or not rejected[1].strip():
        return "empty_response"
    if chosen[1] == rejected[1]:
        return "identical_pair"
    return None


def normalize(table: pa.Table) -> pa.Table:
    """Native HH rows -> CANONICAL. Rows that cannot be split keep their raw dialogues in chosen/rejected."""
    out: dict[str, list] = {name: [] for name in CANONICAL.names}
    for chosen, rejected in zip(table.column("chosen").to_pylist(), table.column("rejected").to_pylist()):
        if chosen is None or rejected is None:
            reason, prompt = "missing_field", None
        else:
            c, r = split_dialogue(chosen), split_dialogue(rejected)
            reason = drop_reason(c, r)
            if reason not in ("no_assistant_turn", "prompt_mismatch"):
                prompt, chosen, rejected = c[0], c[1], r[1]
            else:  # no single prompt exists: keep the whole dialogues so the dropped row can be audited
                prompt = None
        out["prompt"].append(prompt)
        out["chosen"].append(chosen)
        out["rejected"].append(rejected)
        out["drop_reason"].append(reason)
        out["group"].append(None)
    return pa.Table.from_pydict(out, schema=CANONICAL)
