"""yitingxie/rlhf-reward-datasets (train / test). Native columns: prompt, chosen, rejected (strings).

`prompt` stops before the final "Assistant:", which begins each response. DeepSpeed-Chat trains phases
1 and 2 on prompt + chosen and prompts phase 3 with prompt + "Assistant:"; moving the marker from the
responses to the prompt gives both texts exactly:
  prompt = prompt + "Assistant:", chosen = chosen without its leading "Assistant:", rejected likewise.

Differs from DeepSpeed-Chat: a row whose responses do not both begin with "Assistant:" has no single
prompt for all three phases and is dropped (`no_assistant_turn`); empty texts and identical pairs are
dropped and counted (`empty_prompt`, `empty_response`, `identical_pair`).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, pair_reason, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("prompt", "chosen", "rejected")
MARKER = "Assistant:"


def _row(row: dict) -> Row:
    prompt, chosen, rejected = (text(row, c) for c in COLUMNS)
    if not (chosen.startswith(MARKER) and rejected.startswith(MARKER)):
        return Row(prompt, chosen, rejected, "no_assistant_turn")
    chosen, rejected = chosen[len(MARKER):], rejected[len(MARKER):]
    return Row(prompt + MARKER, chosen, rejected, pair_reason(prompt, chosen, rejected))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="yitingxie", columns=COLUMNS, text_fields=COLUMNS, required=COLUMNS, phases=(1, 2, 3),
                  formatting='prompt+"Assistant:", chosen/rejected after their leading "Assistant:"', make=_normalizer)
SPECS = (Spec(name="rlhf-reward-datasets", hub_id="yitingxie/rlhf-reward-datasets", adapter=ADAPTER, native="prompt, chosen, rejected"),)
