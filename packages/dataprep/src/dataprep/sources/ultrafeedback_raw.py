"""openbmb/UltraFeedback, the original behind ultrafeedback_binarized: about 64k prompts, each with 4
completions rated by GPT-4 (train only, carved 9:1). One JSON Lines file per prompt source
({evol_instruct,false_qa,flan,sharegpt,truthful_qa,ultrachat}.jsonl). Native columns: source,
instruction, models, completions[{model, principle, custom_system_prompt, response, annotations,
critique, overall_score, fine-grained_score}], correct_answers, incorrect_answers.

  prompt    = the instruction as one user turn, rendered by --template (the text ultrafeedback_binarized gives)
  responses = completions[].response, ranked by completions[].overall_score (kept as the pairs' scores)
  pairs     = --pairs of the ranking (ranking.py): best-vs-rest by default

overall_score is the score ultrafeedback_binarized chose its pairs by (the hub's data carries the
December 2023 fix of its 10-for-1 bug); fine-grained_score and the per-aspect annotations are not read,
nor is the system prompt each completion was generated with. DeepSpeed-Chat has no adapter for it.

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dataprep.sources.messages import render
from dataprep.sources.options import AdapterOptions
from dataprep.sources.ranking import Ranking, normalizer, numbers, strings
from dataprep.sources.rows import Skip, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

SOURCES = ("evol_instruct", "false_qa", "flan", "sharegpt", "truthful_qa", "ultrachat")


def _row(row: dict, opts: AdapterOptions) -> Ranking:
    instruction, completions = text(row, "instruction"), row.get("completions")
    if completions is None:
        raise Skip("missing_field", "completions")
    if not isinstance(completions, list) or not all(isinstance(c, dict) for c in completions):
        raise Skip("wrong_type", "completions")
    texts = strings([c.get("response") for c in completions], "completions.response")
    scores = numbers([c.get("overall_score") for c in completions], "completions.overall_score", len(texts))
    prompt, responses, _ = render([{"role": "user", "content": instruction}], texts, opts)  # one user turn: no assistant spans
    return Ranking(instruction, texts, prompt, responses, scores, scores)


def read_fields(table: pa.Table) -> pa.Table:
    """`completions` with only the fields read, in Arrow: turning the critiques and annotations into
    Python objects as well took a quarter of the normalization time (bench/rankings.py)."""
    column = table.column("completions") if "completions" in table.column_names else None
    if column is None or not pa.types.is_list(column.type) or not pa.types.is_struct(column.type.value_type):
        return table  # the row function reports what is wrong with it
    kind = column.type.value_type
    keep = [i for i in range(kind.num_fields) if kind.field(i).name in ("response", "overall_score")]
    chunks = []
    for chunk in column.chunks:
        start = chunk.offsets[0].as_py()  # a sliced chunk's items begin there in its values
        values = chunk.values.slice(start, chunk.offsets[-1].as_py() - start)
        fields = values.flatten()  # the struct's nulls applied
        items = pa.StructArray.from_arrays([fields[i] for i in keep], fields=[kind.field(i) for i in keep], mask=values.is_null())
        chunks.append(pa.ListArray.from_arrays(pc.subtract(chunk.offsets, start), items, mask=chunk.is_null()))
    return table.set_column(table.schema.get_field_index("completions"), "completions", pa.chunked_array(chunks))


def _normalizer(opts: AdapterOptions) -> Normalizer:
    normalize = normalizer(("instruction", "completions"), lambda row: _row(row, opts), opts)
    return lambda table: normalize(read_fields(table))


# version 2: row_id is the native row.
ADAPTER = Adapter(name="ultrafeedback-raw", columns=("instruction", "completions"), text_fields=(),
                  required=("instruction", "completions"), phases=(1, 2, 3), responses="completions", make=_normalizer, version=2,
                  formatting="instruction as a user turn (--template), completions[].response ranked by overall_score, paired by --pairs")
SPECS = (Spec(name="ultrafeedback-raw", hub_id="openbmb/UltraFeedback", adapter=ADAPTER, aliases=("UltraFeedback",),
              train=("train", *SOURCES), eval=(), layout=f"{{{','.join(SOURCES)}}}.jsonl",
              native="instruction, completions[{response, overall_score, ...}] (+ source, models, annotations)"),)
