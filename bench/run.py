"""`make bench`: dataprep against a DeepSpeed-Chat-style pipeline, HF datasets and the tokenizer's own
speed, measured in one run on the same input. Prints one table; ratios are against `ours` (2 workers).

    python bench/run.py [--rows 100000] [--large 1000000] [--only ours,ceiling,screen] [--screen-repeats 3]

The input is ../shared/data's two HH-RLHF files repeated with a copy number written into the first
Human turn (so prompts stay distinct) up to --rows; --large repeats the measurement of `ours` and the
ceiling at that size, to show how memory grows with the input. Each system runs in its own process;
wall time includes its imports, peak RSS is that process's (largest process for num_proc runs).

The screen section measures what deduplication plus decontamination against a 10,000-text eval file
(make_eval) add to `ours` (2 workers): prepare with --no-dedup and prepare with both, alternately,
--screen-repeats times each in the same run; the ratio is of the fastest of each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared" / "data" / "hh-rlhf"
FILES = [SHARED / "helpful-online" / "test.jsonl.gz", SHARED / "helpful-rejection-sampled" / "test.jsonl.gz"]
WORK = HERE / "work"

# (label, system, workers, loader run after it)
RUNS = [
    ("ours, 1 worker", "ours", 1, None),
    ("ours, 2 workers", "ours", 2, "ours-load"),
    ("DeepSpeed-Chat style", "dschat", 1, "dschat-load"),
    ("HF datasets, num_proc 1", "datasets", 1, None),
    ("HF datasets, num_proc 2", "datasets", 2, "datasets-load"),
    ("ceiling: encode_batch, 1 thread", "ceiling", 1, None),
    ("ceiling: encode_batch, 2 threads", "ceiling", 2, None),
]


def make_input(rows: int) -> Path:
    path = WORK / f"hh-{rows}.jsonl"
    if path.exists():
        return path
    base = [json.loads(line) for f in FILES for line in gzip.open(f, "rt", encoding="utf-8")]
    WORK.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(rows):
            row, copy = base[i % len(base)], i // len(base)
            mark = f"Human: [{copy}] " if copy else "Human: "
            out.write(json.dumps({k: row[k].replace("Human: ", mark, 1) for k in ("chosen", "rejected")}) + "\n")
    tmp.rename(path)
    return path


def make_eval(rows: int, planted: int = 20) -> Path:
    """A --decontaminate file of `rows` texts like the input's but sharing no 13-word window with it: each
    base dialogue with its words in reverse order. Every rows // planted-th text is instead a base
    row's last reply, verbatim (one of at least 13 words): a leak that every copy of that row carries."""
    path = WORK / f"eval-{rows}.jsonl"
    if path.exists():
        return path
    base = [json.loads(line)["chosen"] for f in FILES for line in gzip.open(f, "rt", encoding="utf-8")]
    replies = [reply for reply in (b.rsplit("Assistant:", 1)[-1].strip() for b in base) if len(reply.split()) >= 13]
    WORK.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(rows):
            leak = i % (rows // planted) == 0
            text = replies[(i * 7919) % len(replies)] if leak else " ".join(reversed(base[i % len(base)].split()))
            out.write(json.dumps({"text": text}) + "\n")
    tmp.rename(path)
    return path


def measure(system: str, src: Path, out: Path, workers: int, *extra: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(HERE / "systems.py"), system, str(src), str(out), str(workers), *extra],
                            stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    output = proc.stdout.read()
    if status != 0:
        raise SystemExit(f"bench: {system} failed (status {status})")
    return {**json.loads(output.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(rows: int, only: set[str] | None, two_workers_only: bool = False) -> list[dict]:
    src = make_input(rows)
    results = []
    for label, system, workers, loader in RUNS:
        if (only and system not in only) or (two_workers_only and workers != 2):
            continue
        out = WORK / f"out-{system}-{workers}-{rows}"
        shutil.rmtree(out, ignore_errors=True)
        print(f"bench: {label} on {rows} rows ...", file=sys.stderr, flush=True)
        result = {"label": label, "system": system, "rows": rows, **measure(system, src, out, workers)}
        result["disk_bytes"] = disk_bytes(out) if out.exists() else 0
        # Token data only (ours also writes zstd text tables, normalized/ and dropped/, for auditing).
        result["token_bytes"] = sum(disk_bytes(p) for p in out.glob("phase*")) if system == "ours" else result["disk_bytes"]
        if loader:
            loaded = measure(loader, src, out, workers)
            result.update(open_s=loaded["open_s"], random_rows_per_s=loaded["random_rows_per_s"], load_wall_s=loaded["wall_s"], load_rss_mb=loaded["rss_mb"])
            if "verified_open_s" in loaded:
                result["verified_open_s"] = loaded["verified_open_s"]
        results.append(result)
        shutil.rmtree(out, ignore_errors=True)
    return results


def screen_cost(rows: int, repeats: int) -> dict:
    """prepare with --no-dedup against prepare with dedup and --decontaminate, alternately."""
    src, bench = make_input(rows), make_eval(10_000)
    runs: dict[str, list[dict]] = {"plain": [], "screened": []}
    for i in range(repeats):
        for kind, system, extra in (("plain", "ours-plain", ()), ("screened", "ours", (str(bench),))):
            out = WORK / f"out-screen-{rows}"
            print(f"bench: screen cost, {kind} {i + 1}/{repeats} on {rows} rows ...", file=sys.stderr, flush=True)
            runs[kind].append(measure(system, src, out, 2, *extra))
            shutil.rmtree(out, ignore_errors=True)
    best = {kind: min(r["wall_s"] for r in results) for kind, results in runs.items()}
    cpu = {kind: min(r["cpu_s"] for r in results) for kind, results in runs.items()}
    return {"rows": rows, "eval_texts": 10_000, "repeats": repeats, "walls": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
            "best": best, "ratio": best["screened"] / best["plain"], "cpu": cpu, "cpu_ratio": cpu["screened"] / cpu["plain"],
            "screened": runs["screened"][0]["screened"], "rss_mb": {k: max(r["rss_mb"] for r in v) for k, v in runs.items()}}


def render_screen(cost: dict) -> str:
    walls = lambda kind: ", ".join(f"{w:.1f}" for w in cost["walls"][kind])
    drops = ", ".join(f"{k} {v:,}" for k, v in cost["screened"].items()) or "none"
    line = lambda label, kind: (f"  {label:44s} wall {cost['best'][kind]:6.1f} s (runs: {walls(kind)})  cpu {cost['cpu'][kind]:6.1f} s  "
                                f"peak RSS {cost['rss_mb'][kind]:,.0f} MB")
    return (f"screen cost on {cost['rows']:,} rows (ours, 2 workers; fastest of {cost['repeats']} runs each, alternating):\n"
            + line("--no-dedup", "plain") + "\n"
            + line(f"dedup + --decontaminate ({cost['eval_texts']:,} texts)", "screened") + "\n"
            + f"  wall ratio {cost['ratio']:.3f} (target <= 1.10), CPU ratio {cost['cpu_ratio']:.3f}; screened: {drops}")


def _ratio(row: dict, base: dict | None, key: str) -> str:
    return f"{row[key] / base[key]:.2f}x" if base and base.get(key) and row.get(key) else "-"


def render(results: list[dict]) -> str:
    ref = {r["rows"]: r for r in results if r["label"] == "ours, 2 workers"}
    header = ["system", "rows", "wall s", "rows/s", "tokens/s", "peak RSS MB", "disk MB", "token MB", "open ms", "open+sha256 ms", "random rows/s",
              "wall / ours", "RSS / ours", "token MB / ours"]
    lines = []
    for r in results:
        base = ref.get(r["rows"])
        lines.append([
            r["label"], f"{r['rows']:,}", f"{r['wall_s']:.1f}", f"{r['rows'] / r['wall_s']:,.0f}", f"{r['tokens'] / r['wall_s']:,.0f}",
            f"{r['rss_mb']:,.0f}", f"{r['disk_bytes'] / 1e6:,.1f}" if r["disk_bytes"] else "-",
            f"{r['token_bytes'] / 1e6:,.1f}" if r["token_bytes"] else "-",
            f"{r['open_s'] * 1000:,.1f}" if "open_s" in r else "-",
            f"{r['verified_open_s'] * 1000:,.1f}" if "verified_open_s" in r else "-",
            f"{r['random_rows_per_s']:,.0f}" if "random_rows_per_s" in r else "-",
            _ratio(r, base, "wall_s"), _ratio(r, base, "rss_mb"), _ratio(r, base, "token_bytes"),
        ])
        if "load_wall_s" in r:
            lines.append([f"  {r['label']}: load back", "", f"{r['load_wall_s']:.1f}", "", "", f"{r['load_rss_mb']:,.0f}"] + [""] * (len(header) - 6))
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(row) for row in lines])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=0, help="also run ours and the ceiling at this size (e.g. 1000000)")
    parser.add_argument("--only", help="comma-separated systems: ours,dschat,datasets,ceiling,screen")
    parser.add_argument("--screen-repeats", type=int, default=3, help="runs of each side of the screen cost (default: %(default)s)")
    args = parser.parse_args()
    missing = [f for f in FILES if not f.exists()]
    if missing:
        print(f"bench: skipped: needs ../shared/data (missing {missing[0]})", file=sys.stderr)
        return 0
    only = set(args.only.split(",")) if args.only else None
    results = run(args.rows, only)
    if args.large:
        results += run(args.large, {"ours", "ceiling"} & (only or {"ours", "ceiling"}), two_workers_only=True)
    cost = screen_cost(args.rows, args.screen_repeats) if only is None or "screen" in only else None
    if results:
        print(render(results))
    if cost:
        print(("\n" if results else "") + render_screen(cost))
    (WORK / "results.json").write_text(json.dumps({"systems": results, "screen": cost}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
