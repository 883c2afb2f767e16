"""The `dataprep` command line. Errors a user can fix print as one line and exit 2; no traceback.

It runs prepare's six stages (pipeline.py), and inspect, verify, stats and datasets over their output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from dataprep import __version__
from dataprep.errors import DataprepError

PREPARE_HELP = """\
Read preference data, split it into the three InstructGPT phases exactly as DeepSpeed-Chat's
data_split does, tokenize each phase and write memory-mapped Arrow shards plus DIR/manifest.json.

Output:
  DIR/phase1/{train,eval}-NNNNN-of-NNNNN.arrow   SFT: input_ids (prompt + chosen + EOS), prompt_len
  DIR/phase2/...                                 reward: chosen_input_ids, rejected_input_ids, prompt_len,
                                                 chosen_score, rejected_score (null without scores)
  DIR/phase3/...                                 PPO: prompt_input_ids (<= --max-prompt-len)
  DIR/unsup/train-*.arrow                        PTX (with --unsup): input_ids, --unsup-block tokens per row
  DIR/normalized/NAME.arrow                      canonical text rows with their side and phase
  DIR/dropped/NAME.arrow                         every dropped row with its reason
  DIR/manifest.json                              inputs, options, tokenizer, counts, shard hashes

Blending (docs/blending.md): several --data datasets are blended as DeepSpeed-Chat does (each split
on its own, then concatenated and shuffled with the seed); --data a:0.7 b:0.3 gives each phase part
exact quotas (largest remainder, seeded samples, recorded in the manifest); --sft-only-data adds
datasets to phase 1 only; --split-by prompt keeps every prompt in one phase and side.

Screening (docs/datasets.md): rows repeating an earlier row's prompt, chosen and rejected (whitespace
normalised) are dropped as `duplicate` unless --no-dedup; with --decontaminate FILE..., rows sharing a
13-word window (--decontam-ngram; words after NFKC, casefolding and punctuation, each CJK character one;
a text of 8-12 words matched whole, shorter ones reported unchecked) are dropped as `contaminated`. Both keep
DeepSpeed-Chat's split indices for the rows that remain, and dropped/ says why, with a detail.

Re-running with the same inputs and options reuses DIR; any change rebuilds it.
"""

INSPECT_HELP = """\
DIR: for each phase and side, the rows, tokens per row (mean, p50, p95, max, against the limit), the
rows truncated, the rows dropped by reason, and the prompts shared between phases and between train
and eval. Computed from the files with polars (shards memory-mapped, text tables streamed): 0.7 s
for 100k pairs (bench/interop.py). --json prints the same as JSON, with a 32-bin length histogram per
token column; --plot FILE.png draws it (pip install 'rlhfkit-dataprep[plot]').

SHARD: one .arrow file: schema, metadata, length statistics and histogram, and its first rows decoded
with the tokenizer the manifest records.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus a pointer to --help), like every other error."""

    def error(self, message: str):
        if message.endswith("expected one argument"):  # e.g. --split -1,1,1: argparse takes it for an option
            message += "; for a value that starts with '-', write --option=VALUE"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dataprep", description="Prepare RLHF preference data as token shards.")
    parser.add_argument("--version", action="version", version=f"dataprep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("prepare", help="normalize, split and tokenize into phase shards", description=PREPARE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, metavar="hh|PATH[:WEIGHT]",
                   help="datasets: the registered name 'hh' (Anthropic HH-RLHF) or local files/directories "
                        "(.jsonl, .jsonl.gz, .json, .parquet, .csv). Files named *test* are the eval side. "
                        "Several datasets are blended as DeepSpeed-Chat does; NAME:WEIGHT on all of them "
                        "(a:0.7 b:0.3) gives each phase part exact quotas instead (docs/blending.md).")
    p.add_argument("--sft-only-data", nargs="+", default=[], metavar="hh|PATH",
                   help="datasets for phase 1 only (DeepSpeed-Chat's sft_only_data_path): all of their rows, added "
                        "after the phase-1 blend and shuffled in with the seed; 'rejected' may be missing")
    p.add_argument("--split-by", choices=("row", "prompt"), default="row",
                   help="split unit: row (DeepSpeed-Chat) or prompt: all pairs sharing a prompt (or SHP post) land "
                        "in the same phase and side (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="local copy of a registered dataset in its native layout "
                   "(for hh: DIR/<subset>/{train,test}.jsonl.gz; DIR/<hub id> or DIR/<name> when present); `dataprep datasets` lists them")
    p.add_argument("--columns", type=_columns, metavar="NAME=COL,...",
                   help="your files' columns: prompt=question,chosen=good,rejected=bad (also messages=COL for chat lists)")
    p.add_argument("--template", choices=("hh", "chat"), default="hh",
                   help="how chat-message lists become text: hh (\\n\\nHuman: ... \\n\\nAssistant:) or chat "
                        "(the tokenizer's chat template) (default: %(default)s)")
    p.add_argument("--shp-min-score-ratio", type=float, metavar="R", help="SHP: drop pairs whose score_ratio is below R (card: 2)")
    p.add_argument("--shp-max-pairs-per-post", type=int, metavar="N", help="SHP: keep at most N pairs per post (card: 5)")
    p.add_argument("--pairs", choices=("best-vs-rest", "all", "best-vs-worst"),
                   help="ranking datasets (K responses per prompt with ranks or scores, e.g. ultrafeedback-raw): the best "
                        "against each other (K-1 pairs; the default), all K(K-1)/2 pairs, or the best against the worst (1)")
    p.add_argument("--keep-ties", action="store_true",
                   help="keep pairs whose two scores (or ranks) are equal; by default they are dropped and counted as tie")
    p.add_argument("--revision", metavar="REV", help="hub revision (branch, tag or commit) for registered datasets")
    p.add_argument("--split", default="2,4,4", metavar="A,B,C", help="phase 1,2,3 weights, DeepSpeed-Chat's data_split (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="split and blend seed (default: %(default)s)")
    p.add_argument("--tokenizer", required=True, metavar="TOK", help="a tokenizer.json, a Hugging Face tokenizer directory or hub id, or a SentencePiece .model")
    p.add_argument("--eos-token", metavar="TOKEN", help="end-of-text token appended in phases 1 and 2 (default: the tokenizer's own)")
    p.add_argument("--max-seq-len", type=int, default=512, help="phases 1-2: keep the first N tokens (default: %(default)s)")
    p.add_argument("--max-prompt-len", type=int, default=256, help="phase 3: drop prompts longer than N tokens (default: %(default)s)")
    p.add_argument("--unsup", nargs="+", default=[], metavar="PATH",
                   help="phase 3's unsupervised (PTX) text: files or directories whose 'text' column (else first string column) "
                        "is tokenized, joined with EOS and cut into --unsup-block token rows in DIR/unsup/")
    p.add_argument("--unsup-block", type=int, default=512, metavar="N",
                   help="tokens per PTX row; DeepSpeed-Chat uses max_prompt_seq_len + max_answer_seq_len (default: %(default)s)")
    p.add_argument("--no-dedup", action="store_true",
                   help="keep exact duplicates (by default a row whose prompt, chosen and rejected equal an earlier row's, "
                        "after whitespace normalisation, is dropped as `duplicate`)")
    p.add_argument("--decontaminate", nargs="+", default=[], metavar="PATH",
                   help="benchmark or eval files or directories (any --data file type; their 'text' column, else 'messages', "
                        "else every string, nested ones included): training rows sharing a --decontam-ngram word window with them are dropped "
                        "as `contaminated`, with the window in dropped/")
    p.add_argument("--decontam-ngram", type=int, default=13, metavar="N", help="words per window for --decontaminate (default: %(default)s)")
    p.add_argument("--shard-size-mb", type=int, default=256, help="upper bound on token bytes per shard (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="tokenizer threads (default: all cores); the output is byte-identical whatever N is")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--strict", action="store_true", help="a row with a missing or non-string text field is an error, not a counted drop")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR is up to date")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of the summary table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    i = sub.add_parser("inspect", help="describe a prepared DIR (per phase and side) or one shard",
                       description=INSPECT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("path", type=Path, metavar="DIR|SHARD", help="an output directory written by prepare, or one .arrow shard")
    i.add_argument("--rows", type=int, default=3, help="SHARD: how many rows to show (default: %(default)s)")
    i.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="DIR: also draw token-length histograms, truncation and drops into FILE.png (needs rlhfkit-dataprep[plot])")
    i.add_argument("--json", action="store_true", help="machine-readable output")

    v = sub.add_parser("verify", help="check a prepared DIR against its manifest (hashes, schema, counts)",
                       description="Recompute every file's sha256 and check schemas, row counts, offsets, token ids, the "
                                   "manifest's own hash and that no file is missing or extra. Exit 1 on any problem.")
    v.add_argument("out", type=Path, metavar="DIR", help="an output directory written by prepare")
    v.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("stats", help="padding waste of phases 1 and 2: unpacked at batch sizes, packed into max_seq_len sequences",
                       description="The share of token slots that batches spend on padding, per phase: unpacked (rows in a seeded "
                                   "order, each batch padded to its longest row, as the trainer does) and packed (the trainer's "
                                   "--packing: rows, or pairs, packed into sequences of at most --max-seq-len tokens). "
                                   "Reads token lengths only.")
    s.add_argument("out", type=Path, metavar="DIR", help="an output directory written by prepare")
    s.add_argument("--phase", type=int, nargs="+", choices=(1, 2), help="phases to report (default: those of 1 and 2 that DIR has)")
    s.add_argument("--side", choices=("train", "eval"), default="train", help="(default: %(default)s)")
    s.add_argument("--batch-size", type=int, nargs="+", default=[4, 8, 16], metavar="N",
                   help="batch sizes: rows or pairs unpacked, packs packed (default: 4 8 16)")
    s.add_argument("--max-seq-len", type=int, metavar="N", help="tokens per packed sequence (default: DIR's --max-seq-len, what the trainer packs to)")
    s.add_argument("--seed", type=int, default=1234, help="the trainer's --seed, which draws the order and the plan (default: %(default)s)")
    s.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("datasets", help="list the registered datasets: name, hub id, native columns, phases")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _columns(text: str) -> dict[str, str]:
    from dataprep.sources.options import parse_columns

    try:
        return parse_columns(text)
    except DataprepError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            return _prepare(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "datasets":
            return _datasets(args)
        if args.command == "stats":
            return _stats(args)
        return _inspect(args)
    except DataprepError as exc:
        print(f"dataprep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dataprep ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"dataprep {args.command}: interrupted", file=sys.stderr)
        return 130


def _prepare(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise DataprepError(f"--workers {args.workers}: must be 0 (all cores) or more")
    if args.workers:
        # Read by the `tokenizers` Rust thread pool when it starts, i.e. before the first encode.
        os.environ["RAYON_NUM_THREADS"] = str(args.workers)
    from dataprep import PrepareOptions, report
    from dataprep.pipeline import prepare

    opts = PrepareOptions(
        data=args.data,
        out=args.out,
        tokenizer=args.tokenizer,
        split=args.split,
        seed=args.seed,
        max_seq_len=args.max_seq_len,
        max_prompt_len=args.max_prompt_len,
        unsup=args.unsup,
        unsup_block=args.unsup_block,
        data_dir=args.data_dir,
        revision=args.revision,
        eos_token=args.eos_token,
        shard_bytes=args.shard_size_mb << 20,
        workers=args.workers or None,
        strict=args.strict,
        force=args.force,
        sft_only_data=args.sft_only_data,
        columns=args.columns,
        template=args.template,
        shp_min_score_ratio=args.shp_min_score_ratio,
        shp_max_pairs_per_post=args.shp_max_pairs_per_post,
        split_by=args.split_by,
        pairs=args.pairs,
        keep_ties=args.keep_ties,
        dedup=not args.no_dedup,
        decontaminate=args.decontaminate,
        decontam_ngram=args.decontam_ngram,
        progress=not (args.quiet or args.json),
    )
    result = prepare(opts)
    if args.json:
        print(json.dumps({"reused": result.reused, "out": str(result.out), **result.manifest}, indent=2))
        return 0
    m = result.manifest
    if result.reused:
        print(f"{result.out} is up to date (cache key {m['cache_key'][:12]}): reusing it; --force rebuilds")
    print(report.prepare_summary(m) + "\n")
    for d in m["inputs"]:
        dropped = {}
        for f in d["files"]:
            for k, v in f.get("dropped", {}).items():
                dropped[k] = dropped.get(k, 0) + v
        carve = f", carved {d['carve']['split']} from {d['carve']['from']}" if d["carve"] else ""
        rows = ", ".join(f"{s} {n}" for s, n in d["rows"].items())
        drops = ", ".join(f"{k} {v}" for k, v in dropped.items()) or "none"
        role = " (sft-only: phase 1)" if d.get("role") == "sft_only" else ""
        print(f"{d['name']}{role}: {len(d['files'])} files, rows {rows}{carve}; dropped while parsing: {drops}"
              f"{report.screened_note(d)}{report.groups_note(d)}{report.ranking_note(d, m['options']['pairs'])}")
    if "decontaminate" in m:
        print(report.decontaminate_line(m["decontaminate"]))
    if "unsup" in m:
        u = m["unsup"]
        drops = ", ".join(f"{k} {v}" for k, v in u["dropped"].items()) or "none"
        print(f"unsup: {u['rows_in']} documents, kept {u['kept']}, dropped {drops}; {u['blocks']} blocks of {u['block']} tokens "
              f"({u['tail_tokens']} tokens of the last partial block left out)")
    if not result.reused:
        print(f"wrote {result.out} in {m['run']['seconds']:.1f}s (manifest: {result.out / 'manifest.json'})")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from dataprep.sources import listing

    entries = listing()
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for e in entries:
        names = ", ".join([e["name"], *e["aliases"]])
        splits = "/".join(e["splits"]["train"]) + " | " + ("/".join(e["splits"]["eval"]) or "carved 9:1")
        phases = ",".join(map(str, e["phases"])) + (" (SFT-only)" if 2 not in e["phases"] else "")
        print(f"{names}\n  hub: {e['hub_id'] or '(local only: --data-dir)'}   splits: {splits}   phases: {phases}\n"
              f"  columns: {e['native_columns']}\n  text: {e['formatting']}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if args.path.is_dir():
        return _inspect_dir(args)
    if args.plot is not None:
        raise DataprepError(f"--plot draws a whole output: pass its DIR, not the shard {args.path}")
    from dataprep.inspect_shard import inspect, render

    info = inspect(args.path, rows=args.rows)
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0


def _inspect_dir(args: argparse.Namespace) -> int:
    if args.plot is not None:
        from dataprep.plot import require_matplotlib

        require_matplotlib()  # before the statistics are computed, not after
    from dataprep.inspect_dir import inspect_dir, render

    stats = inspect_dir(args.path)
    print(json.dumps(dataclasses.asdict(stats), indent=2) if args.json else render(stats))
    if args.plot is not None:
        from dataprep.plot import save

        save(stats, args.plot)
        if not args.json:
            print(f"\nplot: {args.plot}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from dataprep.stats import as_json, render, stats

    found = stats(args.out, args.phase, args.side, args.batch_size, args.max_seq_len, args.seed)
    print(json.dumps(as_json(found), indent=2) if args.json else render(found))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dataprep.verify import verify

    problems, counted = verify(args.out)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems, **counted}, indent=2))
    else:
        for problem in problems:
            print(f"dataprep verify: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.out}: OK ({counted['files']} files, {counted['shards']} shards, {counted['rows']} rows match {args.out / 'manifest.json'})")
    return 1 if problems else 0
