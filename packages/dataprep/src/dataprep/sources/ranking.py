"""Rankings: K responses to one prompt, ordered by ranks or scores, become preference pairs.

--pairs picks the pairs from the best-first order:
  best-vs-rest   the best response against each other one: K-1 pairs (default)
  all            every pair of a better and a worse response: K(K-1)/2 pairs (InstructGPT's comparisons)
  best-vs-worst  the best against the worst: 1 pair
The sort is stable, so equally ranked responses keep their order in the list. A pair of two equally
ranked responses is a `tie` (kept with --keep-ties); every pair gets the content checks of the other
adapters on the texts as written (`empty_prompt`, `empty_response`, `identical_pair`). A ranking with
fewer than two responses gives no pair: it is one row, dropped as `too_few_responses`.

Scores (higher is better) stay with each pair as chosen_score / rejected_score. Ranks (1 = best) order
the responses but are not scores: their pairs have none.

So a row of a ranking dataset, in every count of the manifest, is one pair, or one ranking that gave
none; the manifest adds each file's prompts, responses and pairs (RankingCounts). The pairs of a
prompt share its group key, and plan.py deals a ranking dataset out by group whatever --split-by says:
no prompt is in two phases or on both sides. Phases 1 and 3 take one row per prompt, its first pair
(prompt + best response), and drop the others as `later_pair`.

The users' layout (adapter `ranking`): `prompt` (a string), `responses` (a list of strings) and one of
`ranks` (1 = best) or `scores` (higher = better), one per response. Texts take DeepSpeed-Chat's
jsonfile form, " " + prompt and " " + response, or --template chat's (one user turn). A ranks or scores
list of another length than the responses, or a score that is not a number, is bad input: prepare
stops with one line naming the file, row and field.

Stage 2 of prepare (normalize); the registered openbmb/UltraFeedback (ultrafeedback_raw.py) uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from dataprep.sources.dataset import NATIVE_ROW
from dataprep.sources.messages import render
from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import BadInput, Row, Skip, apply, pair_reason, reply, table_of, text
from dataprep.sources.scores import TIE, number
from dataprep.sources.spec import Adapter, Normalizer


@dataclass(frozen=True)
class Ranking:
    """One prompt and its responses as an adapter read them."""

    text: str  # the prompt as written (content checks)
    texts: list[str]  # the responses as written, in the row's order
    prompt: str  # the prompt rendered
    responses: list[str]  # the responses rendered
    order: list[float]  # per response, higher is better
    scores: list[float] | None  # per response, kept with each pair; None when ranks give the order
    group: str | None = None


@dataclass(frozen=True)
class RankingCounts:
    """What a ranking file held and gave."""

    prompts: int  # native rows (rankings) read
    responses: int  # responses in them
    pairs: int  # pairs made, kept or dropped; a file's other rows are rankings that gave none

    def __add__(self, other: "RankingCounts") -> "RankingCounts":
        return RankingCounts(self.prompts + other.prompts, self.responses + other.responses, self.pairs + other.pairs)

    def record(self) -> dict:
        return {"prompts": self.prompts, "responses": self.responses, "pairs": self.pairs}


def pairs_table(items: list[Ranking | Row], rule: str, keep_ties: bool) -> pa.Table:
    """The CANONICAL rows of a batch, in native row order: each ranking's pairs, or the one dropped row
    of a native row that gave none, with the NATIVE_ROW each came from. A loop per ranking: pairing in
    one polars query over the batch was measured at 0.5 to 1.5 times its speed, depending on --pairs
    (docs/benchmarks.md)."""
    rows: list[Row] = []
    native: list[int] = []
    for index, item in enumerate(items):
        made = [item] if isinstance(item, Row) else pairs(item, rule, keep_ties)
        rows.extend(made)
        native.extend([index] * len(made))
    return table_of(rows).append_column(NATIVE_ROW, pa.array(native, pa.int64()))


def pairs(ranking: Ranking, rule: str, keep_ties: bool) -> list[Row]:
    """One ranking's pairs under `rule`, better response first; with fewer than two responses, one dropped row."""
    if len(ranking.texts) < 2:
        return [Row(ranking.prompt, None, None, "too_few_responses", ranking.group)]
    ranked = sorted(range(len(ranking.order)), key=lambda i: -ranking.order[i])  # stable: ties keep their list order
    if rule == "all":
        picked = [(a, b) for n, a in enumerate(ranked) for b in ranked[n + 1 :]]
    else:
        picked = [(ranked[0], ranked[-1])] if rule == "best-vs-worst" else [(ranked[0], b) for b in ranked[1:]]
    rows = []
    for a, b in picked:
        reason = pair_reason(ranking.text, ranking.texts[a], ranking.texts[b])
        if reason is None and ranking.order[a] == ranking.order[b] and not keep_ties:
            reason = TIE
        scores = (ranking.scores[a], ranking.scores[b]) if ranking.scores else (None, None)
        rows.append(Row(ranking.prompt, ranking.responses[a], ranking.responses[b], reason, ranking.group, *scores))
    return rows


def normalizer(columns: tuple[str, ...], fn: Callable[[dict], Ranking], opts: AdapterOptions) -> Normalizer:
    """A ranking adapter's normalizer: `fn` reads each native row (only `columns`) into a Ranking."""
    return lambda table: pairs_table(apply(table, columns, fn, opts.strict), opts.pairs, opts.keep_ties)


def strings(value: object, field: str) -> list[str]:
    """A list of strings: null -> missing_field, anything else -> wrong_type."""
    if value is None:
        raise Skip("missing_field", field)
    if not isinstance(value, list):
        raise Skip("wrong_type", field)
    return [text({}, field, item, given=True) for item in value]


def numbers(value: object, field: str, count: int) -> list[float]:
    """`count` numbers, one per response: a list of another length is bad input, as is a value that
    is not a number; null (the list or a value) is missing_field."""
    if value is None:
        raise Skip("missing_field", field)
    if not isinstance(value, list):
        raise Skip("wrong_type", field)
    if len(value) != count:
        raise BadInput(field, f"has {len(value)} entries for {count} responses")
    parsed = [number(item, field) for item in value]
    if any(item is None for item in parsed):
        raise Skip("missing_field", field)
    return parsed


def ranking_counts(native: pa.Table, canonical: pa.Table, column: str) -> RankingCounts:
    """A batch's counts: its native rows, the responses in `column`, and the canonical rows that are pairs."""
    values = native.column(column) if column in native.column_names else None
    listed = values is not None and (pa.types.is_list(values.type) or pa.types.is_large_list(values.type))
    responses = int(pc.sum(pc.list_value_length(values)).as_py() or 0) if listed else 0
    return RankingCounts(native.num_rows, responses, canonical.num_rows - canonical.column("chosen").null_count)


def _user_row(row: dict, opts: AdapterOptions) -> Ranking:
    prompt, texts = text(row, "prompt"), strings(row.get("responses"), "responses")
    field = _order(row)
    given = numbers(row.get(field), field, len(texts))
    order, scores = ([-rank for rank in given], None) if field == "ranks" else (given, given)
    if opts.template == "chat":
        rendered, responses, _ = render([{"role": "user", "content": prompt}], texts, opts)  # one user turn: no assistant spans
    else:
        rendered, responses = reply(prompt), [reply(t) for t in texts]
    return Ranking(prompt, texts, rendered, responses, order, scores)


def _order(row: dict) -> str:
    """The field that orders this row's responses. A file has a ranks or a scores column, or both
    (canonical._layout); each row gives exactly one of them: both is bad input, neither a null list."""
    given = [name for name in ("ranks", "scores") if row.get(name) is not None]
    if len(given) == 2:
        raise BadInput("ranks", "and 'scores' are both given: a 'responses' list needs exactly one of 'ranks' or 'scores'")
    return given[0] if given else ("ranks" if "ranks" in row else "scores")


COLUMNS = ("prompt", "responses", "ranks", "scores")
# version 2: row_id is the native row; the layout from the column types, each row's order checked.
RANKING = Adapter(name="ranking", columns=COLUMNS, text_fields=(), required=("prompt", "responses"), phases=(1, 2, 3), version=2,
                  formatting='" "+prompt, " "+each response (or --template chat), paired by --pairs', responses="responses",
                  make=lambda opts: normalizer(COLUMNS, lambda row: _user_row(row, opts), opts))
