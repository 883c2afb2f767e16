"""apple/mkqa (formerly `mkqa`; train only, carved 9:1), SFT-only, read twice: Chinese (zh_cn) and
Japanese (ja). The hub repo has a loading script: its auto-converted parquet (config "mkqa") is read,
or a local mkqa.jsonl.gz. Native columns: example_id, query, queries {<lang>: string},
answers {<lang>: list of {type, entity, text, aliases}}.

  prompt = " Human: " + queries[lang] + " Assistant:", chosen = " " + answers[lang][0].text, rejected = null

Differs from DeepSpeed-Chat: a null answer text (unanswerable questions) drops the row from every
phase (`no_answer`; DeepSpeed-Chat still used the query as a phase-3 prompt); an empty answer list is
`empty_answers`, not an IndexError.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from functools import partial

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, Skip, build, first_item, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("queries", "answers")


def _field(row: dict, column: str, lang: str) -> object:
    value = row.get(column)
    if value is None:
        raise Skip("missing_field", column)
    if not isinstance(value, dict):
        raise Skip("wrong_type", column)
    return value.get(lang)


def _row(lang: str, row: dict) -> Row:
    query = text(row, f"queries.{lang}", _field(row, "queries", lang), given=True)
    first = first_item(_field(row, "answers", lang), f"answers.{lang}", "empty_answers")
    if not isinstance(first, dict):
        raise Skip("wrong_type", f"answers.{lang}")
    answer = first.get("text")
    if answer is None:
        return Row(human(query), None, None, "no_answer")
    answer = text(row, f"answers.{lang}[0].text", answer, given=True)
    return Row(human(query), reply(answer), None, pair_reason(query, answer, None))


def _adapter(lang: str) -> Adapter:
    def make(opts: AdapterOptions) -> Normalizer:
        return lambda table: build(table, COLUMNS, partial(_row, lang), opts.strict)

    return Adapter(name=f"mkqa-{lang}", columns=COLUMNS, text_fields=(), required=COLUMNS, phases=(1, 3),
                   formatting=f'" Human: "+queries.{lang}+" Assistant:", " "+answers.{lang}[0].text; SFT-only', make=make)


_NATIVE = "queries.{lang}, answers.{lang}[{{type, entity, text, aliases}}]"
SPECS = (
    Spec(name="mkqa-zh", hub_id="apple/mkqa", adapter=_adapter("zh_cn"), aliases=("mkqa-Chinese",), train=("train", "mkqa"), eval=(),
         parquet_config="mkqa", native=_NATIVE.format(lang="zh_cn")),
    Spec(name="mkqa-ja", hub_id="apple/mkqa", adapter=_adapter("ja"), aliases=("mkqa-Japanese",), train=("train", "mkqa"), eval=(),
         parquet_config="mkqa", native=_NATIVE.format(lang="ja")),
)
