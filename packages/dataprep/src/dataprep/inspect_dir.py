"""`dataprep inspect DIR`: a whole prepared output, per phase and side, computed from its files by polars.

  rows, token lengths   the shards, through polars over the memory-mapped buffers (PhaseView.lazy):
                        lengths come from the list offsets; no token list becomes a Python object
  truncation            the shards too: prepare appends EOS and then cuts at --max-seq-len, so a row
                        that was cut holds exactly the limit and does not end in EOS (prepare counts
                        the same way: a row cut right after a literal EOS in its text is whole to both)
  drops by reason       dropped/, grouped by phase, side and reason
  prompt overlap        normalized/: distinct prompts (or adapter groups) in two phases, or on both sides

The text tables are read lazily, a few columns and one batch at a time (polars' streaming engine), so
memory stays flat however many rows an output holds. The manifest supplies only what the files cannot:
the limits, the EOS id, which datasets fed which phase, and the PTX documents dropped (no table holds those).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dataprep import report
from dataprep.api import Prepared, open as open_prepared
from dataprep.errors import DataprepError
from dataprep.format import MANIFEST, PHASES, PROMPT_LEN_PHASES, TOKEN_COLUMNS, UNSUP, Manifest, Part, part_dir

HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class Lengths:
    """Token lengths of one token column."""

    min: int
    mean: float
    p50: int
    p95: int
    max: int
    total: int
    histogram: dict[str, list[int]]  # bin i counts lengths in [edges[i], edges[i + 1])


@dataclass(frozen=True)
class PartStats:
    """One phase (or "unsup") and side."""

    phase: Part
    side: str
    rows: int
    limit: int  # the most tokens a row can hold: --max-seq-len, --max-prompt-len (phase 3), --unsup-block
    tokens: dict[str, Lengths]  # per token column
    truncated: int | None  # rows cut at the limit (phases 1 and 2); None where rows are never cut
    dropped: dict[str, int]  # reason -> rows (unsup: documents, as the manifest counts them)


@dataclass(frozen=True)
class DirStats:
    out: str
    tokenizer: str
    parts: list[PartStats]
    overlap: dict  # split_by, then phaseA_phaseB and train_eval: distinct prompts shared


def inspect_dir(out: Path) -> DirStats:
    prepared = open_prepared(out)
    manifest = prepared.manifest
    built = [p for p in PHASES if any(part == p for part, _ in prepared.parts())]
    used = _phases_fed(manifest)
    drops = _drops(manifest, used)
    parts = [_part_stats(prepared, part, side, drops) for part, side in prepared.parts()]
    return DirStats(str(out), manifest.tokenizer.spec, parts, _overlap(manifest, used, built))


def _part_stats(prepared: Prepared, part: Part, side: str, drops: dict) -> PartStats:
    manifest = prepared.manifest
    view = prepared.phase(part, side, verify=False)  # structural checks only: hashing every file is `verify`'s job
    limit = manifest[UNSUP]["block"] if part == UNSUP else manifest.max_prompt_len if part == 3 else manifest.max_seq_len
    frame = view.lazy()
    columns = TOKEN_COLUMNS[part]
    tokens = {c: _lengths(frame, c, limit) for c in columns}
    truncated = None
    if part in PROMPT_LEN_PHASES:
        eos = manifest.tokenizer.eos_id
        cut = pl.any_horizontal([(pl.col(c).list.len() == limit) & (pl.col(c).list.last() != eos) for c in columns])
        truncated = int(frame.select(cut.sum()).collect().item())
    dropped = manifest[UNSUP]["dropped"] if part == UNSUP else drops.get((part, side), {})
    return PartStats(part, side, len(view), limit, tokens, truncated, dict(sorted(dropped.items())))


def _lengths(frame: pl.LazyFrame, column: str, limit: int) -> Lengths:
    n = pl.col(column).list.len()
    row = frame.select(
        n.min().alias("min"), n.mean().alias("mean"), n.quantile(0.5, "lower").alias("p50"),
        n.quantile(0.95, "lower").alias("p95"), n.max().alias("max"), n.sum().alias("total"), pl.len().alias("rows"),
    ).collect().row(0, named=True)
    if row["rows"] == 0:
        return Lengths(0, 0.0, 0, 0, 0, 0, {"edges": [], "counts": []})
    # Fixed bins up to the limit, so that train and eval (and two outputs) share their edges.
    width = -(-(max(limit, row["max"]) + 1) // HISTOGRAM_BINS)
    bins = frame.select((n // width).alias("bin")).group_by("bin").len().collect()
    counts = [0] * HISTOGRAM_BINS
    for b, count in bins.iter_rows():
        counts[b] = count
    return Lengths(row["min"], round(row["mean"], 2), int(row["p50"]), int(row["p95"]), row["max"], row["total"],
                   {"edges": [i * width for i in range(HISTOGRAM_BINS + 1)], "counts": counts})


def _phases_fed(manifest: Manifest) -> dict[str, list[int]]:
    """Dataset name -> the phases it fed. Its normalized/ and dropped/ rows carry the phase the split
    gave them even where the dataset does not feed that phase (an SFT-only dataset): those are not counted."""
    used: dict[str, set[int]] = {}
    for part, _, info in manifest.parts():
        for name in info.get("by_dataset", {}):
            used.setdefault(name, set()).add(part)
    return {name: sorted(phases) for name, phases in used.items()}


def _drops(manifest: Manifest, used: dict[str, list[int]]) -> dict[tuple[int, str], dict[str, int]]:
    """(phase, side) -> reason -> rows, from every dataset's dropped/ table."""
    drops: dict[tuple[int, str], dict[str, int]] = {}
    for name, phases in used.items():
        path = manifest.out / "dropped" / f"{name}.arrow"
        counts = _collect(pl.scan_ipc(path).filter(pl.col("phase").is_in(phases)).group_by("phase", "side", "reason").len(), path, manifest)
        for phase, side, reason, n in counts.iter_rows():
            counted = drops.setdefault((phase, side), {})
            counted[reason] = counted.get(reason, 0) + n
    return drops


def _overlap(manifest: Manifest, used: dict[str, list[int]], built: list[int]) -> dict:
    """What prepare's plan.prompt_overlap counts, from normalized/: distinct prompts (an adapter's group
    where it sets one) fed to two phases (either side), and to both sides (any phase)."""
    # A 64-bit hash per key, as prepare's own keys: a collision among a million prompts has odds of about 3e-8.
    key = (pl.when(pl.col("group").is_not_null()).then(pl.concat_str(pl.lit("group\0"), pl.col("group")))
           .otherwise(pl.concat_str(pl.lit("prompt\0"), pl.col("prompt"))).hash(seed=0).alias("key"))
    flags = [(pl.col("phase") == p).any().alias(f"phase{p}") for p in built]
    flags += [(pl.col("side") == s).any().alias(s) for s in ("train", "eval")]
    per_dataset = []
    for name, phases in used.items():
        path = manifest.out / "normalized" / f"{name}.arrow"
        rows = pl.scan_ipc(path).filter(pl.col("phase").is_in(phases)).select(key, "phase", "side")
        per_dataset.append(_collect(rows.group_by("key").agg(flags), path, manifest))
    keys = pl.concat(per_dataset).group_by("key").agg(pl.exclude("key").any())
    pairs = [(f"phase{a}", f"phase{b}") for i, a in enumerate(built) for b in built[i + 1 :]] + [("train", "eval")]
    shared = keys.select((pl.col(a) & pl.col(b)).sum().alias(f"{a}_{b}") for a, b in pairs).row(0, named=True)
    return {"split_by": manifest["options"]["split_by"], **{name: int(n) for name, n in shared.items()}}


def _collect(frame: pl.LazyFrame, path: Path, manifest: Manifest) -> pl.DataFrame:
    """Run a query over one of prepare's text tables; a missing or damaged table is one line naming it."""
    if not path.is_file():
        raise DataprepError(f"{path}: missing (listed in {manifest.out / MANIFEST}); rerun dataprep prepare")
    try:
        return frame.collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataprepError(f"{path}: not readable ({first}); `dataprep verify {manifest.out}` checks every file") from None


def render(stats: DirStats) -> str:
    """Three tables: rows and tokens per phase, side and token column; drops by reason; shared prompts."""
    rows, columns, reasons = [], [], {}
    for p in stats.parts:
        label = f"{part_dir(p.phase)} {p.side}"
        for i, (column, t) in enumerate(p.tokens.items()):
            first = i == 0  # a part's rows, truncation and drops once, on its first token column
            cut = "-" if p.truncated is None else f"{p.truncated} ({p.truncated / max(p.rows, 1):.1%})"
            rows.append([label if first else "", column, p.rows if first else "", t.total, f"{t.mean:.0f}", t.p50, t.p95, t.max,
                         p.limit, cut if first else "", sum(p.dropped.values()) if first else ""])
        columns.append(label)
        for reason, n in p.dropped.items():
            reasons.setdefault(reason, {})[label] = n
    out = [f"{stats.out} (tokenizer {stats.tokenizer})", "",
           report.table(rows, ["part", "tokens of", "rows", "tokens", "mean", "p50", "p95", "max", "limit", "truncated", "dropped"])]
    if reasons:
        out += ["", report.table([[r] + [by.get(c, 0) for c in columns] for r, by in sorted(reasons.items())], ["dropped because"] + columns)]
    out += ["", report.overlap_line(stats.overlap)]
    return "\n".join(out)
