"""`dataprep inspect DIR --plot FILE.png`: one figure of a prepared output, from inspect_dir's statistics.

Top row: the token-length histogram of each phase (share of rows, train solid and eval dashed, one
colour per token column). Bottom row: the share of rows truncated, and drops by reason per part.
matplotlib is the optional extra `rlhfkit-dataprep[plot]`; the figure is drawn without pyplot (no
global state, no display) and written atomically.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

from dataprep.errors import DataprepError
from dataprep.format import PHASES, part_dir
from dataprep.inspect_dir import DirStats, PartStats

INSTALL = "pip install 'rlhfkit-dataprep[plot]'"
_SIDE_STYLE = {"train": "-", "eval": "--"}


def require_matplotlib() -> None:
    """Refuse --plot up front, in one line, when the extra is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise DataprepError(f"--plot needs matplotlib: {INSTALL}")


def save(stats: DirStats, path: Path) -> None:
    """Draw the figure and write it to `path` (a .png) through a temporary file in the same directory."""
    if path.suffix.lower() != ".png":
        raise DataprepError(f"--plot {path}: the figure is written as PNG; name the file *.png")
    figure = draw(stats)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataprepError(f"--plot {path}: cannot write ({exc.strerror or exc}); choose another file") from None
    finally:
        tmp.unlink(missing_ok=True)


def draw(stats: DirStats):
    from matplotlib.figure import Figure

    phases = [p for p in PHASES if any(s.phase == p for s in stats.parts)]
    figure = Figure(figsize=(13, 8), layout="constrained")
    figure.suptitle(f"{stats.out}  (tokenizer {stats.tokenizer})", fontsize=10)
    grid = figure.add_gridspec(2, 6)  # six columns: the top row splits into 1, 2 or 3 phases evenly
    span = 6 // len(phases)
    for i, phase in enumerate(phases):
        _histograms(figure.add_subplot(grid[0, i * span : (i + 1) * span]), phase, [s for s in stats.parts if s.phase == phase])
    _truncated(figure.add_subplot(grid[1, :2]), stats.parts)
    _drops(figure.add_subplot(grid[1, 2:]), stats.parts)
    return figure


def _histograms(ax, phase: int, parts: list[PartStats]) -> None:
    colours = {}
    for part in parts:
        for column, lengths in part.tokens.items():
            if not part.rows:
                continue
            colour = colours.setdefault(column, f"C{len(colours)}")
            share = [c / part.rows for c in lengths.histogram["counts"]]
            ax.stairs(share, lengths.histogram["edges"], color=colour, linestyle=_SIDE_STYLE.get(part.side, ":"),
                      label=f"{column} ({part.side}, {part.rows} rows)")
    limit = parts[0].limit
    ax.axvline(limit, color="grey", linewidth=0.8)
    ax.set_title(f"phase {phase}: tokens per row (limit {limit})", fontsize=10)
    ax.set_xlabel("tokens")
    ax.set_ylabel("share of rows")
    ax.legend(fontsize=7)


def _truncated(ax, parts: list[PartStats]) -> None:
    cut = [p for p in parts if p.truncated is not None]
    labels = [_label(p) for p in cut]
    shares = [100 * p.truncated / p.rows if p.rows else 0.0 for p in cut]
    bars = ax.bar(labels, shares, color=["C0" if p.side == "train" else "C1" for p in cut])
    ax.bar_label(bars, [f"{p.truncated}" for p in cut], fontsize=8)
    ax.set_title("rows truncated at --max-seq-len (count on the bar)", fontsize=10)
    ax.set_ylabel("% of rows")
    ax.tick_params(axis="x", labelsize=8)


def _drops(ax, parts: list[PartStats]) -> None:
    shown = [p for p in parts if p.phase in PHASES]  # the PTX documents dropped are not rows of a part
    labels = [_label(p) for p in shown]
    reasons = sorted({r for p in shown for r in p.dropped})
    bottom = [0] * len(shown)
    for i, reason in enumerate(reasons):
        counts = [p.dropped.get(reason, 0) for p in shown]
        ax.bar(labels, counts, bottom=bottom, label=reason, color=f"C{i % 10}")
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_title("rows dropped, by reason", fontsize=10)
    ax.set_ylabel("rows")
    ax.tick_params(axis="x", labelsize=8)
    if reasons:
        ax.legend(fontsize=7)


def _label(part: PartStats) -> str:
    return f"{part_dir(part.phase)}\n{part.side}"
