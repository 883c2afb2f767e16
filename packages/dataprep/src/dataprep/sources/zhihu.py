"""wangrui6/Zhihu-KOL (Chinese; train only, carved 9:1), SFT-only. Native columns: INSTRUCTION,
RESPONSE, SOURCE, METADATA (strings; the last two are not read).

  prompt = " Human: " + INSTRUCTION + " Assistant:", chosen = " " + RESPONSE, rejected = null

Differs from DeepSpeed-Chat: a null RESPONSE drops the row from every phase (`missing_field`); there it
still gave a phase-3 prompt. Empty texts are counted drops (`empty_prompt`, `empty_response`).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("INSTRUCTION", "RESPONSE")


def _row(row: dict) -> Row:
    prompt, response = text(row, "INSTRUCTION"), text(row, "RESPONSE")
    return Row(human(prompt), reply(response), None, pair_reason(prompt, response, None))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="zhihu", columns=COLUMNS, text_fields=COLUMNS, required=COLUMNS, phases=(1, 3),
                  formatting='" Human: "+INSTRUCTION+" Assistant:", " "+RESPONSE; SFT-only', make=_normalizer)
SPECS = (Spec(name="zhihu-kol", hub_id="wangrui6/Zhihu-KOL", adapter=ADAPTER, eval=(), native="INSTRUCTION, RESPONSE, SOURCE, METADATA"),)
