"""The screen stage's table work, three ways, on the bench's rows: what docs/benchmarks.md cites for
choosing polars, numpy or Python in dedup.py and decontaminate.py.

    python bench/screen.py [--rows 100000]

Input: bench/run.py's rows (HH test files repeated) through the HH adapter, and its 10,000-text eval
file. CPU seconds (all threads) and wall seconds for each way; the ways must agree.
  dedup keys        Python loop (" ".join(s.split()), blake2b, a dict) | polars (dedup.content_keys)
  n-gram lookups    Python sets of 13-word tuples | polars is_in against the eval signatures, chunk
                    by chunk | numpy bitmap + sorted search (decontaminate.Benchmark.candidates)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (bench/run.py: the inputs)

from dataprep import decontaminate, dedup, ngrams  # noqa: E402
from dataprep.inputs import Input  # noqa: E402
from dataprep.sources import iter_canonical, local  # noqa: E402

CHUNK = 4096
N = 13


def timed(label: str, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    print(f"  {label:58s} wall {time.perf_counter() - wall:6.2f} s   cpu {time.process_time() - cpu:6.2f} s", flush=True)
    return result


def python_duplicates(rows: pa.Table) -> np.ndarray:
    seen: dict[bytes, int] = {}
    flags = []
    for prompt, chosen, rejected in zip(*(rows.column(f).to_pylist() for f in dedup.FIELDS)):
        text = "\0".join("\1" if s is None else " ".join(s.split()) for s in (prompt, chosen, rejected))
        flags.append(seen.setdefault(hashlib.blake2b(text.encode(), digest_size=16).digest(), len(flags)) != len(flags))
    return np.array(flags)


def polars_duplicates(rows: pa.Table) -> np.ndarray:
    keys = np.concatenate([dedup.content_keys(rows.slice(s, CHUNK)) for s in range(0, rows.num_rows, CHUNK)])
    return dedup.first_copies(keys) != np.arange(len(keys))


def python_contaminated(rows: pa.Table, texts: list[str]) -> np.ndarray:
    grams = set()
    for text in texts:
        words = ngrams.words(text)
        grams.update(tuple(words[i : i + N]) for i in range(len(words) - N + 1))
    flags = np.zeros(rows.num_rows, bool)
    for field in dedup.FIELDS:
        for i, text in enumerate(rows.column(field).to_pylist()):
            words = ngrams.words(text or "")
            flags[i] |= any(tuple(words[j : j + N]) in grams for j in range(len(words) - N + 1))
    return flags


def polars_candidates(rows: pa.Table, bench: decontaminate.Benchmark) -> np.ndarray:
    index = pl.Series(bench.sig).implode()
    flags = np.zeros(rows.num_rows, bool)
    for start in range(0, rows.num_rows, CHUNK):
        for field in dedup.FIELDS:
            w = ngrams.windows(rows.column(field).slice(start, CHUNK).combine_chunks(), bench.m, bench.stride)
            hit = pl.Series(w.sig).is_in(index).to_numpy()
            flags[start + w.text[hit]] = True
    return flags


def numpy_candidates(rows: pa.Table, bench: decontaminate.Benchmark) -> np.ndarray:
    flags = np.zeros(rows.num_rows, bool)
    for start in range(0, rows.num_rows, CHUNK):
        for field in dedup.FIELDS:
            flags[start : start + CHUNK] |= bench.candidates(rows.column(field).slice(start, CHUNK).combine_chunks())
    return flags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    if not all(f.exists() for f in run.FILES):
        print("bench/screen.py: skipped: needs ../shared/data", file=sys.stderr)
        return 0
    src, eval_path = run.make_input(args.rows), run.make_eval(10_000)
    dataset = local.resolve(src)
    rows = pa.concat_tables(n.table for f in dataset.files for n in iter_canonical(dataset, f)).select(list(dedup.FIELDS)).combine_chunks()
    print(f"{rows.num_rows:,} rows, {rows.nbytes / 1e6:,.0f} MB of text; eval file {eval_path.name}")
    print("dedup keys")
    a = timed("Python loop: split/join, blake2b, dict", lambda: python_duplicates(rows))
    b = timed("polars: normalise, hash twice, first copies (dedup.py)", lambda: polars_duplicates(rows))
    assert (a == b).all()
    print(f"  duplicates: {int(a.sum())}")
    eval_dataset = local.resolve(eval_path)
    bench = timed("index the eval file (decontaminate.load)", lambda: decontaminate.load([Input(eval_dataset, "decontaminate", [
        {"path": str(eval_path), "sha256": ""}])], N))
    texts = bench.texts.to_pylist()
    print("n-gram lookups (13 words)")
    exact = timed("Python: sets of word tuples", lambda: python_contaminated(rows, texts))
    via_polars = timed("polars: is_in against the eval signatures, per chunk", lambda: polars_candidates(rows, bench))
    via_numpy = timed("numpy: bitmap + sorted search (decontaminate.py)", lambda: numpy_candidates(rows, bench))
    assert (via_polars == via_numpy).all() and (exact <= via_numpy).all()
    print(f"  contaminated: {int(exact.sum())}; candidates before confirming: {int(via_numpy.sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
