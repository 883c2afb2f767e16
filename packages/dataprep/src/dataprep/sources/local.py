"""Local files and directories, and DeepSpeed-Chat's local "jsonfile" format.

A path is one dataset: a single file, or every supported file under a directory (recursively, sorted;
hidden files and folders, whose names start with a dot, are left out). A file whose name contains
"test" is the eval side, the others the train side.

Rows with a `prompt` column use DeepSpeed-Chat's `local/jsonfile` surface form: " " + prompt and
" " + response (the user writes the Human/Assistant template inside `prompt`). A null `rejected`
makes the row SFT-only: it feeds phases 1 and 3 and is counted as `no_rejected` in phase 2 (as in
DeepSpeed-Chat, whose SFT-only rows still give phase-3 prompts). With --template chat the prompt is one
user turn and each response the assistant's reply, rendered by the tokenizer's chat template.
Registered as `jsonfile` / `local/jsonfile`: --data-dir DIR holds train.json and eval.json (DeepSpeed-Chat
reads them from applications/DeepSpeed-Chat/data/).

Differs from DeepSpeed-Chat: empty prompts or responses and identical pairs are counted drops
(`empty_prompt`, `empty_response`, `identical_pair`); a file without a `rejected` column is SFT-only
data (DeepSpeed-Chat raises KeyError).

Stage 1 of prepare resolves the files; the jsonfile adapter normalizes them in stage 2.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from dataprep import readers
from dataprep.errors import DataprepError
from dataprep.sources.dataset import SCORES, Dataset, InputFile, canonical_table, side_of
from dataprep.sources.messages import render
from dataprep.sources.options import AdapterOptions
from dataprep.sources.rows import Row, build, pair_reason, text
from dataprep.sources.spec import Adapter, Normalizer, Spec

COLUMNS = ("prompt", "chosen", "rejected")


def resolve(path: Path, label: str | None = None) -> Dataset:
    """Files of one local dataset; `label` prefixes each file's `source` (default: the directory name)."""
    if not path.exists():
        raise DataprepError(f"--data {path}: no such file or directory")
    if path.is_dir():
        paths = readers.data_files(path)
        if not paths:
            raise DataprepError(f"--data {path}: no {', '.join(readers.SUFFIXES)} files in this directory")
        label = label or path.resolve().name
        files = tuple(InputFile(p, side_of(p), source) for p, source in zip(paths, sources(label, [p.relative_to(path) for p in paths])))
    else:
        if not readers.is_supported(path):
            raise DataprepError(f"--data {path}: unsupported file type; use one of {', '.join(readers.SUFFIXES)}")
        name = stem(Path(path.name))
        files = (InputFile(path, side_of(path), f"{label}/{name}" if label else name),)
    return Dataset(stem(Path(path.resolve().name)), files, origin=str(path))


def sources(label: str, rels: list[Path]) -> list[str]:
    """Each file's source label: label/its path without the suffix, or with it where two files would
    otherwise share one (train.jsonl beside train.parquet), so that (source, row_id) names one row."""
    stems = [stem(rel) for rel in rels]
    shared = {s for s, n in Counter(stems).items() if n > 1}
    return [f"{label}/{rel.as_posix() if s in shared else s}" for rel, s in zip(rels, stems)]


def stem(rel: Path) -> str:
    name = rel.as_posix()
    for suffix in sorted(readers.SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def normalize_jsonfile(table: pa.Table) -> pa.Table:
    columns = table.column_names
    prompts = table.column("prompt").to_pylist()
    chosens = table.column("chosen").to_pylist()
    rejecteds = table.column("rejected").to_pylist() if "rejected" in columns else [None] * len(prompts)
    out: dict[str, list] = {name: [] for name in ("prompt", "chosen", "rejected", "drop_reason", "group")}
    for prompt, chosen, rejected in zip(prompts, chosens, rejecteds):
        reason = None
        if prompt is None or chosen is None:
            reason = "missing_field"
        elif not prompt.strip():
            reason = "empty_prompt"
        elif not chosen.strip() or (rejected is not None and not rejected.strip()):
            reason = "empty_response"
        elif chosen == rejected:
            reason = "identical_pair"
        out["prompt"].append(None if prompt is None else " " + prompt)
        out["chosen"].append(None if chosen is None else " " + chosen)
        out["rejected"].append(None if rejected is None else " " + rejected)
        out["drop_reason"].append(reason)
        out["group"].append(None)
    return canonical_table(out)


def _chat_row(row: dict, opts: AdapterOptions) -> Row:
    prompt, chosen = text(row, "prompt"), text(row, "chosen")
    rejected = None if row.get("rejected") is None else text(row, "rejected")
    reason = pair_reason(prompt, chosen, rejected)
    rendered, (chosen, rejected), spans = render([{"role": "user", "content": prompt}], [chosen, rejected], opts)
    return Row(rendered, chosen, rejected, reason, assistant_spans=spans)


def jsonfile_normalizer(opts: AdapterOptions) -> Normalizer:
    if opts.template == "chat":
        return lambda table: build(table, COLUMNS, lambda row: _chat_row(row, opts), opts.strict)
    return normalize_jsonfile


JSONFILE = Adapter(name="jsonfile", columns=COLUMNS, text_fields=COLUMNS, required=("prompt", "chosen"), phases=(1, 2, 3),
                   formatting='" "+prompt, " "+chosen, " "+rejected (null rejected: SFT-only row)', make=jsonfile_normalizer,
                   version=3, scores=SCORES)  # 3: an empty CSV cell is null
SPECS = (Spec(name="jsonfile", hub_id=None, adapter=JSONFILE, aliases=("local/jsonfile",), eval=("eval", "test"),
              native="prompt, chosen, rejected"),)
