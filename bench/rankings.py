"""Rankings into pairs, measured: dataprep's loop over each ranking (sources/ranking.py) against the
same pairing as one polars query over the batch's responses, on a local file shaped like
openbmb/UltraFeedback (4 rated completions per prompt, with its long per-completion annotations), and
where that stage sits in the whole normalization of the file (JSON read, row functions, pairing).

    python bench/rankings.py [--prompts 64000]

Both pairings take the same Ranking values (what the adapter's row function read) and must give equal
tables; each time is the best of 3 runs. The polars query carries only numbers through its sort and
joins (strings are gathered by index afterwards, with Arrow), its fastest form we found. Nothing here
needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import readers
from dataprep.sources import CANONICAL, iter_canonical, resolve
from dataprep.sources.options import PAIR_RULES, AdapterOptions
from dataprep.sources.ranking import Ranking, pairs_table
from dataprep.sources.rows import Row, apply, table_of
from dataprep.sources.scores import TIE
from dataprep.sources.ultrafeedback_raw import _row, read_fields

WORDS = "the a model answer helpful because data reason good bad fine step first second explain".split()


def write(path: Path, prompts: int) -> None:
    """UltraFeedback's columns at about its sizes: ~200-word responses, critiques and four rationales."""
    rng = random.Random(0)
    words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    with open(path, "w") as f:
        for i in range(prompts):
            completions = [{"model": f"m{k}", "principle": "helpfulness", "custom_system_prompt": words(20), "response": words(200),
                            "annotations": {a: {"Rating": str(rng.randint(1, 5)), "Rationale": words(60)}
                                            for a in ("helpfulness", "honesty", "instruction_following", "truthfulness")},
                            "critique": words(120), "overall_score": rng.choice([3.0, 5.0, 6.5, 7.0, 8.0, 9.0]), "fine-grained_score": 4.0}
                           for k in range(4)]
            f.write(json.dumps({"source": "flan", "instruction": f"{i} " + words(40), "models": [c["model"] for c in completions],
                                "completions": completions, "correct_answers": [], "incorrect_answers": []}) + "\n")


def polars_pairs(items: list[Ranking | Row], rule: str, keep_ties: bool) -> pa.Table:
    """The same pairing as one polars query over the batch: the alternative measured."""
    single, long, heads, responses, scores = [], {k: [] for k in LONG}, {k: [] for k in HEADS}, [], []
    for rid, item in enumerate(items):
        if isinstance(item, Row) or len(item.texts) < 2:
            single.append((rid, item if isinstance(item, Row) else Row(item.prompt, None, None, "too_few_responses", item.group)))
            continue
        first: dict[str, int] = {}  # equal texts get equal ids: the identical_pair check without comparing strings
        k = len(item.texts)
        for name, values in (("rid", [rid] * k), ("place", range(k)), ("order", item.order), ("blank", [not t.strip() for t in item.texts]),
                             ("same", [first.setdefault(t, i) for i, t in enumerate(item.texts)])):
            long[name].extend(values)
        for name, value in (("rid", rid), ("prompt", item.prompt), ("group", item.group), ("blank_prompt", not item.text.strip())):
            heads[name].append(value)
        responses.extend(item.responses)
        scores.extend(item.scores or [None] * k)
    ranked = pl.DataFrame(long, schema=LONG).with_row_index("at").sort(["rid", "order", "place"], descending=[False, True, False])
    ranked = ranked.with_columns(rank=pl.int_range(pl.len()).over("rid"), last=pl.len().over("rid") - 1)
    better = ranked.rename({c: f"{c}_a" for c in ranked.columns if c != "rid"})
    worse = ranked.rename({c: f"{c}_b" for c in ranked.columns if c != "rid"})
    if rule == "all":
        joined = better.join(worse, on="rid").filter(pl.col("rank_a") < pl.col("rank_b"))
    else:
        worst = pl.col("rank_b") == pl.col("last_b") if rule == "best-vs-worst" else pl.col("rank_b") > 0
        joined = better.filter(pl.col("rank_a") == 0).join(worse.filter(worst), on="rid")
    head = pl.DataFrame({"rid": heads["rid"], "blank_prompt": heads["blank_prompt"]}, schema={"rid": pl.Int64, "blank_prompt": pl.Boolean})
    joined = joined.join(head.with_row_index("head"), on="rid").sort(["rid", "rank_a", "rank_b"])
    reason = (pl.when(pl.col("blank_prompt")).then(pl.lit("empty_prompt")).when(pl.col("blank_a") | pl.col("blank_b")).then(pl.lit("empty_response"))
              .when(pl.col("same_a") == pl.col("same_b")).then(pl.lit("identical_pair")))
    if not keep_ties:
        reason = reason.when(pl.col("order_a") == pl.col("order_b")).then(pl.lit(TIE))
    found = joined.select("rid", "head", "at_a", "at_b", reason=reason.otherwise(None)).to_arrow()
    texts, graded = pa.array(responses, pa.string()), pa.array(scores, pa.float64())
    prompts, groups = pa.array(heads["prompt"], pa.string()), pa.array(heads["group"], pa.string())
    made = pa.table({"rid": found["rid"], "prompt": prompts.take(found["head"]), "chosen": texts.take(found["at_a"]),
                     "rejected": texts.take(found["at_b"]), "drop_reason": found["reason"], "group": groups.take(found["head"]),
                     "chosen_score": graded.take(found["at_a"]), "rejected_score": graded.take(found["at_b"])})
    dropped = table_of([row for _, row in single]).add_column(0, "rid", pa.array([rid for rid, _ in single], pa.int64()))
    rows = pa.concat_tables([made.cast(dropped.schema), dropped])
    return rows.take(pc.sort_indices(rows["rid"])).drop_columns(["rid"]).cast(CANONICAL)  # stable: pairs keep their order


LONG = {"rid": pl.Int64, "place": pl.Int64, "order": pl.Float64, "blank": pl.Boolean, "same": pl.Int64}
HEADS = ("rid", "prompt", "group", "blank_prompt")


def best_of(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "flan.jsonl", args.prompts)
        dataset = resolve("ultrafeedback-raw", data_dir=root)
        file, opts = dataset.files[0], AdapterOptions()
        size = file.path.stat().st_size / 2**20
        read_s, _ = best_of(lambda: sum(t.num_rows for t in readers.iter_tables(file.path)), runs=1)
        whole_s, pairs = best_of(lambda: sum(b.table.num_rows for b in iter_canonical(dataset, file, opts)), runs=1)
        items = [item for table in readers.iter_tables(file.path)
                 for item in apply(read_fields(table), ("instruction", "completions"), lambda row: _row(row, opts), strict=False)]
        print(f"{args.prompts} prompts ({size:.0f} MB): JSON read {read_s:.2f} s; read + normalize into {pairs} pairs {whole_s:.2f} s")
        print(f"{'--pairs':<14} {'pairs':>8} {'loop s (used)':>14} {'polars s':>9} {'polars speed-up':>16}")
        for rule in PAIR_RULES:
            loop_s, expected = best_of(lambda: pairs_table(items, rule, False))
            polars_s, got = best_of(lambda: polars_pairs(items, rule, False))
            assert got.equals(expected), rule
            print(f"{rule:<14} {got.num_rows:>8} {loop_s:>14.2f} {polars_s:>9.2f} {loop_s / polars_s:>15.1f}x")


if __name__ == "__main__":
    main()
