"""stanfordnlp/SHP (train / validation; the test split is not read, as in DeepSpeed-Chat). Native layout:
<subreddit>/{train,validation,test}.json, JSON Lines with post_id, domain, upvote_ratio, history,
c_root_id_A/B, created_at_utc_A/B, score_A/B, human_ref_A/B, labels (1: A preferred), seconds_difference,
score_ratio (the preferred comment's score over the other's, >= 1).

  prompt = " Human: " + history + " Assistant:"
  chosen = " " + human_ref_A if labels == 1 else " " + human_ref_B; rejected = the other
  group  = post_id (`--split-by prompt` keeps a post's pairs together)
  chosen_score, rejected_score = ln(score) of the preferred and of the other comment

The scores are the comments' net votes (score_A, score_B), on a log scale: their difference is then
ln(score_ratio), the card's measure of how strongly one comment is preferred, and a margin
(--margin_loss) in those units stays near 1 (a ratio of 2 gives 0.69, of 10 gives 2.3) where raw vote
differences run to hundreds. The card keeps comments with a score of at least 2; a pair with a vote
count below 1 gets no scores (null). Preferred and other never tie in SHP (score_ratio >= 2).

Optional filters from SHP's dataset card, off by default (recorded in the manifest's options):
  --shp-min-score-ratio R     drop pairs with score_ratio < R (`shp_score_ratio`); without a
                              score_ratio column it is max(score_A, score_B) / min(score_A, score_B)
  --shp-max-pairs-per-post N  keep a post's first N pairs in file order (`shp_post_cap`); pairs already
                              dropped for another reason do not count

Differs from DeepSpeed-Chat: the card's filters exist (DeepSpeed-Chat has none); empty texts and
identical comments are counted drops (`empty_prompt`, `empty_response`, `identical_pair`).

An adapter: stage 2 of prepare (normalize).
"""

from __future__ import annotations

import math

from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, Skip, build, human, pair_reason, reply, text
from dataprep.sources.scores import number
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("post_id", "history", "human_ref_A", "human_ref_B", "labels", "score_ratio", "score_A", "score_B")
TEXT = ("history", "human_ref_A", "human_ref_B")


def _number(row: dict, field: str) -> float:
    value = row.get(field)
    if value is None:
        raise Skip("missing_field", field)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Skip("wrong_type", field) from None


def _score_ratio(row: dict) -> float:
    if row.get("score_ratio") is not None:
        return _number(row, "score_ratio")
    a, b = _number(row, "score_A"), _number(row, "score_B")
    return max(a, b) / min(a, b) if min(a, b) > 0 else float("inf")


def _log_votes(row: dict, chosen: str) -> tuple[float | None, float | None]:
    """ln(votes) of the chosen comment ("A" or "B") and of the other; None for both without votes >= 1."""
    votes = [number(row.get(f"score_{side}"), f"score_{side}") for side in (chosen, "B" if chosen == "A" else "A")]
    if any(v is None or v < 1 for v in votes):
        return None, None
    return math.log(votes[0]), math.log(votes[1])


def _normalizer(opts: AdapterOptions) -> Normalizer:
    per_post: dict[str, int] = {}  # kept pairs so far, for the cap; SHP posts never span split files

    def row_fn(row: dict) -> Row:
        history, a, b = (text(row, c) for c in TEXT)
        label = _number(row, "labels")
        chosen, rejected = (a, b) if int(label) == 1 else (b, a)
        scores = _log_votes(row, "A" if int(label) == 1 else "B")
        post = row.get("post_id")
        group = None if post is None else str(post)
        reason = pair_reason(history, chosen, rejected)
        if reason is None and opts.shp_min_score_ratio is not None and _score_ratio(row) < opts.shp_min_score_ratio:
            reason = "shp_score_ratio"
        if reason is None and opts.shp_max_pairs_per_post is not None:
            if group is None:
                raise Skip("missing_field", "post_id")
            if per_post.get(group, 0) >= opts.shp_max_pairs_per_post:
                reason = "shp_post_cap"
            else:
                per_post[group] = per_post.get(group, 0) + 1
        return Row(human(history), reply(chosen), reply(rejected), reason, group, *scores)

    return lambda table: build(table, COLUMNS, row_fn, opts.strict)


ADAPTER = Adapter(name="shp", columns=COLUMNS, text_fields=TEXT, required=("history", "human_ref_A", "human_ref_B", "labels"),
                  phases=(1, 2, 3), formatting='" Human: "+history+" Assistant:", " "+preferred comment, " "+other; group = post_id',
                  make=_normalizer, version=2)
SPECS = (Spec(name="shp", hub_id="stanfordnlp/SHP", adapter=ADAPTER, eval=("validation",),
              native="post_id, history, human_ref_A, human_ref_B, labels, score_A, score_B, score_ratio (+ metadata)"),)
