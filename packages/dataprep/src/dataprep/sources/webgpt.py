"""openai/webgpt_comparisons (train only, carved 9:1; the hub repo has a loading script, so its
auto-converted parquet is read). Native columns: question {full_text, id, dataset}, quotes_0/1,
answer_0/1, tokens_0/1, score_0/1 (float, score_0 + score_1 = 0).

  prompt = " Human: " + question.full_text + " Assistant:"
  chosen = " " + clean(the answer with the higher score), rejected = " " + clean(the other)
clean() is DeepSpeed-Chat's citation cleaning, in order: delete every " [...]" / " (...)" span (a
space, then a bracketed or parenthesised span, non-greedy, not across lines), then every "[...]" /
"(...)" span. Any parenthetical goes, not only citations ("the USA (United States)" -> "the USA").

  chosen_score, rejected_score = the higher and the lower of score_0 and score_1 (in [-1, 1])

Differs from DeepSpeed-Chat: a tie (score_0 == score_1, often 0 vs 0) carries no preference and is
dropped (`tie`, the rule for every scored dataset; --keep-ties keeps it, with answer_0 "chosen" as in
DeepSpeed-Chat). Answers empty after cleaning, identical cleaned answers and null fields are counted
drops (`empty_response`, `identical_pair`, `missing_field`); a score that is not a number is an error.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

import re

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, Skip, build, human, pair_reason, reply, text
from dataprep.sources.scores import number
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("question", "answer_0", "answer_1", "score_0", "score_1")
_SPACED = re.compile(r" [\(\[].*?[\)\]]")
_BARE = re.compile(r"[\(\[].*?[\)\]]")


def clean(answer: str) -> str:
    return _BARE.sub("", _SPACED.sub("", answer))


def _score(row: dict, field: str) -> float:
    value = number(row.get(field), field)
    if value is None:
        raise Skip("missing_field", field)
    return value


def _row(row: dict) -> Row:
    question = row.get("question")
    if question is not None and not isinstance(question, dict):
        raise Skip("wrong_type", "question")
    full = text(row, "question.full_text", (question or {}).get("full_text"), given=True)
    answers = text(row, "answer_0"), text(row, "answer_1")
    s0, s1 = _score(row, "score_0"), _score(row, "score_1")
    good, bad = (clean(a) for a in (answers if s0 >= s1 else answers[::-1]))
    return Row(human(full), reply(good), reply(bad), pair_reason(full, good, bad), None, max(s0, s1), min(s0, s1))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="webgpt", columns=COLUMNS, text_fields=("answer_0", "answer_1"), required=COLUMNS, phases=(1, 2, 3),
                  formatting='" Human: "+question.full_text+" Assistant:", " "+cleaned better/worse answer; ties dropped',
                  make=_normalizer, version=2)
SPECS = (Spec(name="webgpt", hub_id="openai/webgpt_comparisons", adapter=ADAPTER, aliases=("webgpt_comparisons",),
              train=("train", "comparisons"), eval=(), parquet_config="default",
              native="question.full_text, answer_0, answer_1, score_0, score_1 (+ quotes_*, tokens_*)"),)
