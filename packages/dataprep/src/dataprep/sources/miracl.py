"""Cohere/miracl-zh-queries-22-12 and Cohere/miracl-ja-queries-22-12 (train / dev): retrieval queries
with judged passages, used as pairs. Native columns: query_id, query, positive_passages,
negative_passages (lists of {docid, title, text}).

  prompt = " Human: " + query + " Assistant:"
  chosen = " " + positive_passages[0].text, rejected = " " + negative_passages[0].text

Differs from DeepSpeed-Chat: an empty passage list is a counted drop (`no_positive_passage`,
`no_negative_passage`); there the zh class crashes with IndexError and the ja class crashes in
get_rejected (its phase-2 method alone is guarded). Empty texts and identical passages are counted drops.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, Skip, build, first_item, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("query", "positive_passages", "negative_passages")


def _first_text(row: dict, field: str, empty: str) -> str:
    first = first_item(row.get(field), field, empty)
    if not isinstance(first, dict):
        raise Skip("wrong_type", field)
    return text(row, f"{field}[0].text", first.get("text"), given=True)


def _row(row: dict) -> Row:
    query = text(row, "query")
    chosen = _first_text(row, "positive_passages", "no_positive_passage")
    rejected = _first_text(row, "negative_passages", "no_negative_passage")
    return Row(human(query), reply(chosen), reply(rejected), pair_reason(query, chosen, rejected))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _row, opts.strict)


ADAPTER = Adapter(name="miracl", columns=COLUMNS, text_fields=("query",), required=COLUMNS, phases=(1, 2, 3),
                  formatting='" Human: "+query+" Assistant:", " "+positive_passages[0].text, " "+negative_passages[0].text',
                  make=_normalizer)
_NATIVE = "query_id, query, positive_passages[{docid, title, text}], negative_passages[...]"
SPECS = (
    Spec(name="miracl-zh", hub_id="Cohere/miracl-zh-queries-22-12", adapter=ADAPTER, eval=("dev",), native=_NATIVE),
    Spec(name="miracl-ja", hub_id="Cohere/miracl-ja-queries-22-12", adapter=ADAPTER, eval=("dev",), native=_NATIVE),
)
