"""pvduy/sharegpt_alpaca_oa_vicuna_format (train / test), SFT-only. Native columns: prompt (a
conversation in "USER: ... ASSISTANT:" form), label (the final reply).

  prompt = prompt with the turn markers "USER:" -> "Human:" and "ASSISTANT:" -> "Assistant:"
  chosen = " " + label, rejected = null (phases 1 and 3 only; phase 2 counts the row as no_rejected)

Differs from DeepSpeed-Chat: its rename is a plain replace over the whole text, so content changes too
("USERNAME" -> "HumanNAME"); here only markers are renamed: "USER:" / "ASSISTANT:" at the start of the
text or after whitespace. Empty prompts and labels are counted drops (`empty_prompt`, `empty_response`).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

import re

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("prompt", "label")
_MARKER = re.compile(r"(?<!\S)(USER|ASSISTANT):")
_RENAMED = {"USER": "Human:", "ASSISTANT": "Assistant:"}


def rename_markers(conversation: str) -> str:
    return _MARKER.sub(lambda m: _RENAMED[m.group(1)], conversation)


def _row(row: dict) -> Row:
    prompt, label = text(row, "prompt"), text(row, "label")
    return Row(rename_markers(prompt), reply(label), None, pair_reason(prompt, label, None))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="sharegpt", columns=COLUMNS, text_fields=COLUMNS, required=COLUMNS, phases=(1, 3),
                  formatting='prompt with USER:/ASSISTANT: markers -> Human:/Assistant:, " "+label; SFT-only', make=_normalizer)
SPECS = (Spec(name="sharegpt", hub_id="pvduy/sharegpt_alpaca_oa_vicuna_format", adapter=ADAPTER, native="prompt, label"),)
