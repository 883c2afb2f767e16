"""Dahoas's HH-derived sets.

Dahoas/rm-static, Dahoas/full-hh-rlhf (train / test). Native columns: prompt, response, chosen,
rejected (strings; `response` is not read). `prompt` is an HH transcript ending in "\\n\\nAssistant:"
and the responses begin with a space, so the text is used verbatim:
  prompt = prompt, chosen = chosen, rejected = rejected  (phase 1 text = prompt + chosen)

Dahoas/synthetic-instruct-gptj-pairwise (train only, carved 9:1). Native columns: prompt, chosen,
rejected. prompt = " Human: " + prompt + " Assistant:", chosen/rejected = " " + text.

Differs from DeepSpeed-Chat: rows with an empty prompt or response, or with chosen == rejected, are
dropped and counted (`empty_prompt`, `empty_response`, `identical_pair`); DeepSpeed-Chat trains on them.
A null field is `missing_field` (DeepSpeed-Chat crashes on it).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, human, pair_reason, reply, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("prompt", "chosen", "rejected")


def _verbatim(row: dict) -> Row:
    prompt, chosen, rejected = (text(row, c) for c in COLUMNS)
    return Row(prompt, chosen, rejected, pair_reason(prompt, chosen, rejected))


def _human(row: dict) -> Row:
    prompt, chosen, rejected = (text(row, c) for c in COLUMNS)
    return Row(human(prompt), reply(chosen), reply(rejected), pair_reason(prompt, chosen, rejected))


def _static(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _verbatim, opts.strict)


def _synthetic(opts: AdapterOptions) -> Normalizer:
    return lambda table: build(table, COLUMNS, _human, opts.strict)


STATIC = Adapter(name="dahoas", columns=COLUMNS, text_fields=COLUMNS, required=COLUMNS, phases=(1, 2, 3),
                 formatting="prompt, chosen, rejected verbatim (HH transcript form)", make=_static)
SYNTHETIC = Adapter(name="synthetic", columns=COLUMNS, text_fields=COLUMNS, required=COLUMNS, phases=(1, 2, 3),
                    formatting='" Human: "+prompt+" Assistant:", " "+chosen, " "+rejected', make=_synthetic)

SPECS = (
    Spec(name="rm-static", hub_id="Dahoas/rm-static", adapter=STATIC, native="prompt, response, chosen, rejected"),
    Spec(name="full-hh-rlhf", hub_id="Dahoas/full-hh-rlhf", adapter=STATIC, native="prompt, response, chosen, rejected"),
    Spec(name="synthetic-instruct-gptj-pairwise", hub_id="Dahoas/synthetic-instruct-gptj-pairwise", adapter=SYNTHETIC, eval=(),
         native="prompt, chosen, rejected"),
)
