"""Hello-SimpleAI/HC3-Chinese (train only, carved 9:1), SFT-only. The hub repo has a loading script
with one config per source; config "all" is read (its auto-converted parquet, or a local all.jsonl).
Native columns: id, question, human_answers (list of strings), chatgpt_answers (not read).

  prompt = " Human: " + question + " Assistant:", chosen = " " + human_answers[0], rejected = null

Differs from DeepSpeed-Chat: the config is given (DeepSpeed-Chat dropped it in #398, so its
load_dataset call fails); an empty human_answers list is a counted drop (`empty_answers`), not an
IndexError; empty texts are counted drops.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, first_item, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("question", "human_answers")
CONFIG = "all"


def _row(row: dict) -> Row:
    question = text(row, "question")
    first = first_item(row.get("human_answers"), "human_answers", "empty_answers")
    answer = text(row, "human_answers[0]", first, given=True)
    return Row(human(question), reply(answer), None, pair_reason(question, answer, None))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="hc3", columns=COLUMNS, text_fields=("question",), required=COLUMNS, phases=(1, 3),
                  formatting='" Human: "+question+" Assistant:", " "+human_answers[0]; SFT-only', make=_normalizer)
SPECS = (Spec(name="hc3-chinese", hub_id="Hello-SimpleAI/HC3-Chinese", adapter=ADAPTER, train=(CONFIG,), eval=(), parquet_config=CONFIG,
              native="id, question, human_answers[], chatgpt_answers[]"),)
