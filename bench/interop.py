"""The Python API's conversions, measured: `PhaseView.to_polars()` and `.to_hf()` against the other
ways to get the same rows into polars and HF datasets, and `dataprep inspect DIR`.

    python bench/interop.py [--rows 120000]

The input is bench/run.py's (../shared/data's HH-RLHF rows repeated with a copy number), prepared with
the GPT-2 tokenizer and --split 0,1,0, so phase 2's train side holds about 100k pairs (the 9:1 carve
and the drops take the rest). Each route runs in its own process, after its imports and after the
view is opened: the time is the conversion's; "peak MB" is the growth of the process's peak RSS during
it (the peak is reset first, /proc/self/clear_refs); "private MB" the growth of its anonymous memory,
i.e. what was copied (mapped file pages are shared page cache, not a copy). inspect DIR is timed
whole, imports included, as a user runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GPT2 = HERE.parent.parent / "shared" / "data" / "tokenizers" / "gpt2" / "tokenizer.json"

# route -> what it does
ROUTES = {
    "to_polars": "PhaseView.to_polars(): pl.from_arrow over the mapped table",
    "polars.read_ipc": "pl.read_ipc on each shard, concatenated (polars reads the files)",
    "to_hf": "PhaseView.to_hf(): Dataset over the mapped table, fingerprint from the shards' sha256",
    "hf.Dataset(table)": "datasets.Dataset(table): the same table, HF fingerprints it itself",
    "hf.from_file(stream copy)": "the shards rewritten in the IPC stream format, then Dataset.from_file",
    "hf.load_dataset('arrow')": "load_dataset('arrow', data_files=shards) into a fresh cache dir",
}


def memory() -> dict[str, int]:
    """Peak RSS, RSS and anonymous RSS of this process, in kB."""
    wanted = {"VmHWM": "peak", "VmRSS": "rss", "RssAnon": "anon"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = int(value.split()[0])
    return out


def convert(route: str, out: Path) -> dict:
    """In a child process: open phase 2 train, then time one route."""
    import datasets
    import polars as pl
    import pyarrow as pa

    import dataprep

    view = dataprep.open(out).phase(2, "train", verify=False)
    table = view.table
    work = Path(tempfile.mkdtemp(dir=HERE / "work"))
    before = memory()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    if route == "to_polars":
        result = view.to_polars()
    elif route == "polars.read_ipc":
        result = pl.concat([pl.read_ipc(p) for p in view.shards.paths])
    elif route == "to_hf":
        result = view.to_hf()
    elif route == "hf.Dataset(table)":
        result = datasets.Dataset(table)
    elif route == "hf.from_file(stream copy)":
        path = work / "stream.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches():
                writer.write_batch(batch)
        result = datasets.Dataset.from_file(str(path))
    elif route == "hf.load_dataset('arrow')":
        result = datasets.load_dataset("arrow", data_files=[str(p) for p in view.shards.paths], split="train", cache_dir=str(work))
    else:
        raise SystemExit(f"unknown route {route}")
    seconds = time.perf_counter() - start
    after = memory()
    assert len(result) == len(view)
    disk = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    shutil.rmtree(work)
    return {"route": route, "rows": len(view), "seconds": seconds, "peak_mb": (after["peak"] - before["rss"]) / 1024,
            "private_mb": (after["anon"] - before["anon"]) / 1024, "disk_mb": disk / 1e6}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(f"bench: {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inspect_dir(out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dataprep", "inspect", str(out), "--json"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit("bench: dataprep inspect failed")
    return {"seconds": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024}


def prepared(rows: int) -> Path:
    sys.path.insert(0, str(HERE))
    from run import make_input  # bench/run.py's input, shared with `make bench`

    src = make_input(rows)
    out = HERE / "work" / f"interop-{rows}"
    subprocess.run([sys.executable, "-m", "dataprep", "prepare", "--data", str(src), "--tokenizer", str(GPT2), "--split", "0,1,0",
                    "--out", str(out), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=120_000, help="input rows (phase 2 train gets about 5/6 of them)")
    parser.add_argument("--child", nargs=2, metavar=("ROUTE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(convert(args.child[0], Path(args.child[1]))))
        return 0
    if not GPT2.exists():
        print(f"bench: skipped: needs ../shared/data (missing {GPT2})", file=sys.stderr)
        return 0
    out = prepared(args.rows)
    results = [child("--child", route, str(out)) for route in ROUTES]
    rows = results[0]["rows"]
    print(f"phase 2 train, {rows:,} rows ({sum(p.stat().st_size for p in (out / 'phase2').glob('train-*.arrow')) / 1e6:.1f} MB of shards)\n")
    width = max(map(len, ROUTES))
    print(f"{'route':<{width}}  {'ms':>8}  {'peak MB':>8}  {'private MB':>10}  {'disk MB':>8}")
    for r in results:
        print(f"{r['route']:<{width}}  {r['seconds'] * 1000:>8.1f}  {r['peak_mb']:>8.1f}  {r['private_mb']:>10.1f}  {r['disk_mb']:>8.1f}")
    print("\n" + "\n".join(f"{route:<{width}}  {what}" for route, what in ROUTES.items()))
    inspected = inspect_dir(out)
    print(f"\ndataprep inspect {out.name} --json: {inspected['seconds']:.2f} s, peak RSS {inspected['peak_mb']:.0f} MB (whole process)")
    (HERE / "work" / "interop.json").write_text(json.dumps({"results": results, "inspect": inspected}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
