"""Anthropic HH-RLHF: each row is two whole dialogues, `chosen` and `rejected`,
"\\n\\nHuman: ...\\n\\nAssistant: ...", that share every turn but the last Assistant reply.

prompt = the dialogue up to and including its last "\\n\\nAssistant:", response = the rest, so that
prompt + response gives back the original text byte for byte. Rows are dropped (and counted) when the
two prompts differ, a response is empty, the two responses are equal, there is no Assistant turn,
or a dialogue is missing (`missing_field`).

Registered as `hh` / `Anthropic/hh-rlhf`: the train and test files of the four preference subsets
(red-team-attempts has no pairs and is not read), from the hub or from --data-dir in that layout.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

import pyarrow as pa

from dataprep.sources.dataset import SCORES, canonical_table
from dataprep.sources.options import AdapterOptions
from dataprep.sources.spec import Adapter, Normalizer, Spec

SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
MARKER = "\n\nAssistant:"


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
    out: dict[str, list] = {name: [] for name in ("prompt", "chosen", "rejected", "drop_reason", "group")}
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
    return canonical_table(out)


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return normalize


ADAPTER = Adapter(name="hh", columns=("chosen", "rejected"), text_fields=("chosen", "rejected"), required=("chosen", "rejected"),
                  phases=(1, 2, 3), formatting='prompt = dialogue up to its last "\\n\\nAssistant:", chosen/rejected = the rest',
                  make=_normalizer, version=3, scores=SCORES)  # 3: an empty CSV cell is null
SPECS = (Spec(name="hh", hub_id="Anthropic/hh-rlhf", adapter=ADAPTER, native="chosen, rejected (whole dialogues)",
              hub_files=tuple(f"{subset}/{split}.jsonl.gz" for subset in SUBSETS for split in ("train", "test")),
              layout=f"{{{','.join(SUBSETS)}}}/{{train,test}}.jsonl.gz"),)
