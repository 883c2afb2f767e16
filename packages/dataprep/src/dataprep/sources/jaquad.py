"""lmqg/qg_jaquad and lmqg/qag_jaquad (Japanese; train / validation, test not read), SFT-only. Both hub
repos have loading scripts: their auto-converted parquet is read (configs "qg_jaquad", "qag_jaquad").

qg_jaquad columns: answer, question, sentence, paragraph, sentence_answer, paragraph_answer, ...
  prompt = " Human: " + question + " Assistant:", chosen = " " + sentence (the answer's sentence)
qag_jaquad columns: paragraph, questions (list), answers (list), questions_answers
  prompt = " Human: " + questions[0] + " Assistant:", chosen = " " + paragraph (the whole paragraph)
rejected = null for both.

Differs from DeepSpeed-Chat: an empty questions list is a counted drop (`empty_questions`), not an
IndexError; empty texts are counted drops.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, first_item, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec


def _qg(row: dict) -> Row:
    question, sentence = text(row, "question"), text(row, "sentence")
    return Row(human(question), reply(sentence), None, pair_reason(question, sentence, None))


def _qag(row: dict) -> Row:
    first = first_item(row.get("questions"), "questions", "empty_questions")
    question, paragraph = text(row, "questions[0]", first, given=True), text(row, "paragraph")
    return Row(human(question), reply(paragraph), None, pair_reason(question, paragraph, None))


def _qg_normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, ("question", "sentence"), _qg, opts.strict)


def _qag_normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, ("questions", "paragraph"), _qag, opts.strict)


QG = Adapter(name="qg-jaquad", columns=("question", "sentence"), text_fields=("question", "sentence"), required=("question", "sentence"),
             phases=(1, 3), formatting='" Human: "+question+" Assistant:", " "+sentence; SFT-only', make=_qg_normalizer)
QAG = Adapter(name="qag-jaquad", columns=("questions", "paragraph"), text_fields=("paragraph",), required=("questions", "paragraph"),
              phases=(1, 3), formatting='" Human: "+questions[0]+" Assistant:", " "+paragraph; SFT-only', make=_qag_normalizer)
SPECS = (
    Spec(name="qg-jaquad", hub_id="lmqg/qg_jaquad", adapter=QG, eval=("validation",), parquet_config="qg_jaquad",
         native="question, sentence (+ answer, paragraph, sentence_answer, ...)"),
    Spec(name="qag-jaquad", hub_id="lmqg/qag_jaquad", adapter=QAG, eval=("validation",), parquet_config="qag_jaquad",
         native="questions[], paragraph (+ answers[], questions_answers)"),
)
