"""Plain-text rendering for the terminal: the prepare summary and length histograms.

It renders what stage 6 of prepare sealed, and inspect's findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def prepare_summary(manifest: dict) -> str:
    """Two tables: rows per phase and side, then drops by reason (one column per phase and side)."""
    rows, columns, reasons = [], [], {}
    for phase, sides in manifest["phases"].items():
        for side, info in sides.items():
            tokens = next(iter(info["tokens"].values()))
            rows.append([f"phase {phase}", side, info["rows_in"], info["kept"], sum(info["dropped"].values()),
                         info["truncated"], f"{tokens['mean']:.0f}", tokens["max"], len(info["shards"])])
            columns.append(f"{phase} {side}")
            for reason, n in info["dropped"].items():
                reasons.setdefault(reason, {})[columns[-1]] = n
    out = table(rows, ["phase", "side", "rows in", "kept", "dropped", "truncated", "mean tok", "max tok", "shards"])
    if reasons:
        drops = [[r] + [by.get(c, 0) for c in columns] for r, by in sorted(reasons.items())]
        out += "\n\n" + table(drops, ["dropped because"] + columns)
    quotas = quota_rows(manifest)
    if quotas:
        out += "\n\n" + table(quotas, ["phase", "side", "dataset", "weight", "available", "quota", "taken", "repeated", "left out"])
    if "prompt_overlap" in manifest:
        out += "\n\n" + overlap_line(manifest["prompt_overlap"])
    return out


def quota_rows(manifest: dict) -> list[list]:
    """One row per phase, side and weighted dataset: what its weight asked for and what it gave."""
    rows = []
    for phase, sides in manifest["phases"].items():
        for side, info in sides.items():
            for name, d in info["by_dataset"].items():
                if "blend" in d:
                    b = d["blend"]
                    rows.append([f"phase {phase}", side, name, f"{b['weight']:.4g}", b["available"], b["quota"], b["taken"], b["repeated"], b["left_out"]])
    return rows


def overlap_line(overlap: dict) -> str:
    counts = ", ".join(f"{k.replace('_', '/')} {v}" for k, v in overlap.items() if k != "split_by")
    return f"prompts shared (split by {overlap['split_by']}): {counts}"


def screened_note(described: dict) -> str:
    """The rows the screen dropped from one dataset (any phase, used or not)."""
    screened = described.get("screened")
    return "; screened: " + ", ".join(f"{k} {v}" for k, v in screened.items()) if screened else ""


def decontaminate_line(record: dict) -> str:
    """The benchmark files, and a warning for their texts too short to check (older manifests lack the counts)."""
    files = ", ".join(Path(f["path"]).name for f in record["files"])
    line = f"decontaminate: {record['texts']:,} texts, {record['windows']:,} windows of {record['ngram']} words"
    if record.get("whole"):
        line += f", {record['whole']:,} texts of {record['min_words']} to {record['ngram'] - 1} words matched whole"
    line += f" ({files})"
    short = [f for f in record["files"] if f.get("too_short")]
    if short:
        counts = ", ".join(f"{f['too_short']:,} in {Path(f['path']).name}" for f in short)
        total = sum(f["too_short"] for f in short)
        line += (f"\nwarning: {total:,} {'text' if total == 1 else 'texts'} of fewer than {record['min_words']} words "
                 f"{'is' if total == 1 else 'are'} not checked ({counts})")
    return line


def groups_note(described: dict) -> str:
    """For --split-by prompt: the rows whose prompt took them to the other side than their file's."""
    groups = described.get("groups")
    if not groups:
        return ""
    return f"; split by prompt: {groups['moved_to_eval']} train rows moved to eval, {groups['moved_to_train']} eval rows to train, {groups['pinned_rows']} rows placed by an earlier dataset"


def ranking_note(described: dict, rule: str) -> str:
    """For a ranking dataset: responses in, pairs out (its rows are those pairs)."""
    ranking = described.get("ranking")
    if not ranking:
        return ""
    return f"; rankings: {ranking['prompts']} prompts, {ranking['responses']} responses -> {ranking['pairs']} pairs ({rule})"


def histogram(lengths: np.ndarray, bins: int = 10) -> dict:
    """Integer-edged length histogram: bin i holds lengths in [edges[i], edges[i+1])."""
    if lengths.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = int(lengths.min()), int(lengths.max()) + 1
    step = max(1, -(-(hi - lo) // bins))
    edges = list(range(lo, hi + step, step))
    counts, _ = np.histogram(lengths, bins=edges)
    return {"edges": edges, "counts": counts.tolist()}


def render_histogram(hist: dict, width: int = 40) -> str:
    if not hist["counts"]:
        return "  (no rows)"
    top = max(max(hist["counts"]), 1)
    lines = []
    for count, lo, hi in zip(hist["counts"], hist["edges"], hist["edges"][1:]):
        bar = "#" * round(width * count / top)
        lines.append(f"  {lo:>7} - {hi - 1:>7} | {bar:<{width}} {count}")
    return "\n".join(lines)
