"""Stage 1 of prepare, resolve: check the options, parse the split and the weights once, locate and
hash every input file, load the tokenizer, and compute the cache key. Everything later stages need
from the command line travels in the one `Inputs` value this returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from importlib import metadata as importlib_metadata
from pathlib import Path

from dataprep import blend, readers
from dataprep.errors import DataprepError
from dataprep.format import FORMAT_VERSION, PHASES, file_sha256, sha256_json
from dataprep.options import PrepareOptions
from dataprep.sources import ADAPTER_VERSIONS, Dataset, local, resolve
from dataprep.sources.canonical import is_ranking
from dataprep.sources.options import PAIR_RULES, AdapterOptions, from_prepare as adapter_options
from dataprep.split import SFT_ONLY, Split
from dataprep.tokenizer import Tokenizer, load_tokenizer

# Libraries whose version can change the bytes written; part of the cache key.
LIBRARIES = ("pyarrow", "tokenizers", "transformers", "sentencepiece")


@dataclass(frozen=True)
class Input:
    """One resolved dataset with its files hashed. `role`: "data" (--data), "sft_only"
    (--sft-only-data: phase 1 only) or "unsup" (--unsup: phase 3's PTX text)."""

    dataset: Dataset
    role: str
    files: list[dict]  # per file: path, side, source, bytes, sha256

    @property
    def name(self) -> str:
        return self.dataset.name

    def phases(self, wanted: tuple[int, ...]) -> tuple[int, ...]:
        """The phases this dataset feeds when the split builds `wanted`."""
        return (1,) if self.role == "sft_only" else wanted

    def record(self) -> dict:
        return {"name": self.name, "origin": self.dataset.origin, "revision": self.dataset.revision, "files": self.files}


@dataclass(frozen=True)
class Inputs:
    options: PrepareOptions
    split: Split
    wanted: tuple[int, ...]  # the phases the split gives rows to
    weights: tuple[Fraction, ...] | None  # --data NAME:WEIGHT, one per --data dataset
    datasets: list[Input]  # --data in order, then --sft-only-data
    unsup: list[Input]
    benchmarks: list[Input]  # --decontaminate
    tokenizer: Tokenizer
    adapters: AdapterOptions
    key_options: dict  # every option that changes the bytes written
    cache_key: str

    def split_for(self, dataset: Input) -> Split:
        """DeepSpeed-Chat's split for SFT-only data is 10,0,0: all of each side to phase 1."""
        return SFT_ONLY if dataset.role == "sft_only" else self.split


def resolve_inputs(opts: PrepareOptions) -> Inputs:
    split = _check(opts)
    names, weights = blend.parse_data(list(opts.data))
    blend.check_sft_only(list(opts.sft_only_data))
    datasets = _resolve_all(names, opts)
    if opts.pairs is not None and not any(is_ranking(d.dataset, opts.columns) for d in datasets):
        raise DataprepError(f"--pairs {opts.pairs}: no ranking dataset among --data (a 'responses' list with 'ranks' or 'scores', "
                            "or a registered one such as ultrafeedback-raw)")
    tokenizer = load_tokenizer(opts.tokenizer, eos_token=opts.eos_token, workers=opts.workers)
    adapters = adapter_options(opts, tokenizer, [d.dataset for d in datasets])
    unsup = [_hashed(_local_dataset("--unsup", p), "unsup") for p in opts.unsup]
    benchmarks = [_hashed(_local_dataset("--decontaminate", p), "decontaminate") for p in opts.decontaminate]
    key_options = {**_key_fields(opts, weights), **_template_key(adapters)}
    return Inputs(options=opts, split=split, wanted=tuple(p for p, w in zip(PHASES, split.weights) if w > 0),
                  weights=None if weights is None else tuple(weights), datasets=datasets, unsup=unsup, benchmarks=benchmarks,
                  tokenizer=tokenizer, adapters=adapters, key_options=key_options,
                  cache_key=cache_key(datasets + unsup + benchmarks, tokenizer, key_options))


def _check(opts: PrepareOptions) -> Split:
    if not 0 <= opts.seed < 2**32:
        raise DataprepError(f"--seed {opts.seed}: must be an integer in [0, 2**32) (numpy RandomState)")
    if opts.max_seq_len < 2:
        raise DataprepError(f"--max-seq-len {opts.max_seq_len}: must be at least 2")
    if opts.max_prompt_len < 1:
        raise DataprepError(f"--max-prompt-len {opts.max_prompt_len}: must be at least 1")
    if opts.unsup_block < 2:
        raise DataprepError(f"--unsup-block {opts.unsup_block}: must be at least 2 tokens")
    if opts.out.exists() and not opts.out.is_dir():
        raise DataprepError(f"--out {opts.out}: exists and is not a directory")
    if opts.decontam_ngram < 1:
        raise DataprepError(f"--decontam-ngram {opts.decontam_ngram}: must be at least 1 word")
    if opts.split_by not in ("row", "prompt"):
        raise DataprepError(f"--split-by {opts.split_by}: expected row or prompt")
    if opts.pairs not in (None, *PAIR_RULES):
        raise DataprepError(f"--pairs {opts.pairs}: expected one of {', '.join(PAIR_RULES)}")
    split = Split.parse(opts.split)
    if opts.sft_only_data and split.weights[0] == 0:
        raise DataprepError(f"--sft-only-data feeds phase 1 only, but --split {opts.split} builds no phase 1; drop it or give phase 1 a weight")
    if not opts.data:
        raise DataprepError("--data: give at least one dataset (hh, or a file or directory)")
    return split


def _resolve_all(names: list[str], opts: PrepareOptions) -> list[Input]:
    """--data datasets, then --sft-only-data ones; two with the same base name get distinct table names
    and source labels."""
    resolved, seen = [], set()
    for spec, role in [(n, "data") for n in names] + [(n, "sft_only") for n in opts.sft_only_data]:
        d = resolve(spec, opts.data_dir, opts.revision)
        name, n = d.name, 2
        while name in seen:
            name, n = f"{d.name}-{n}", n + 1
        seen.add(name)
        files = d.files if name == d.name else tuple(replace(f, source=_renamed(f.source, d.name, name)) for f in d.files)
        resolved.append(_hashed(Dataset(name, files, d.origin, d.revision, d.adapter), role))
    return resolved


def _renamed(source: str, old: str, new: str) -> str:
    """A source label under a dataset's new name (two datasets named alike), so that no two datasets'
    files share a label: (source, row_id) names one row of one file."""
    if source == old or source.startswith(old + "/"):
        return new + source[len(old):]
    return f"{new}/{source}"


def _local_dataset(flag: str, path: str) -> Dataset:
    """A file or directory given to `flag` (not --data): its supported files."""
    where = Path(path).expanduser()
    if not where.exists():
        raise DataprepError(f"{flag} {path}: no such file or directory")
    if where.is_file() and not readers.is_supported(where):
        raise DataprepError(f"{flag} {path}: unsupported file type; use one of {', '.join(readers.SUFFIXES)}")
    if where.is_dir() and not readers.data_files(where):
        raise DataprepError(f"{flag} {path}: no {', '.join(readers.SUFFIXES)} files in this directory")
    return local.resolve(where)


def _hashed(dataset: Dataset, role: str) -> Input:
    files = []
    for f in dataset.files:
        try:
            files.append({"path": str(f.path), "side": f.side, "source": f.source, "bytes": f.path.stat().st_size, "sha256": file_sha256(f.path)})
        except OSError as exc:
            raise DataprepError(f"{f.path}: cannot be read ({exc.strerror})") from None
    return Input(dataset, role, files)


def _key_fields(opts: PrepareOptions, weights: list[Fraction] | None) -> dict:
    """The options that change the bytes written (not the output path, the input locations, which are
    keyed by content, or display and rebuild flags)."""
    return {
        "split": opts.split,
        "seed": opts.seed,
        "max_seq_len": opts.max_seq_len,
        "max_prompt_len": opts.max_prompt_len,
        "eos_token": opts.eos_token,
        "shard_bytes": opts.shard_bytes,
        "columns": opts.columns,
        "template": opts.template,
        "shp_min_score_ratio": opts.shp_min_score_ratio,
        "shp_max_pairs_per_post": opts.shp_max_pairs_per_post,
        "sft_only_data": list(opts.sft_only_data),
        "split_by": opts.split_by,
        # The datasets' contents are keyed through the inputs; their --data weights only here.
        "data_weights": None if weights is None else [float(w) for w in weights],
        "unsup": list(opts.unsup),
        "unsup_block": opts.unsup_block,
        "pairs": opts.pairs or PAIR_RULES[0],
        "keep_ties": opts.keep_ties,
        "dedup": opts.dedup,
        # The files' contents are keyed through the inputs; the window size only matters with files.
        "decontaminate": list(opts.decontaminate),
        "decontam_ngram": opts.decontam_ngram if opts.decontaminate else None,
    }


def _template_key(adapters: AdapterOptions) -> dict:
    """With --template chat, the template's text decides the rendered rows: a changed template rebuilds."""
    return {"chat_template_sha256": adapters.chat_template_sha256} if adapters.chat_template else {}


def cache_key(inputs: list[Input], tokenizer: Tokenizer, options: dict) -> str:
    """A sha256 over the input files' contents (and hub revision), their sides and source labels, the
    adapters' versions, the tokenizer fingerprint, the tokenizer libraries' versions, every option
    that changes the output and the format version: never a name, so a changed byte anywhere rebuilds."""
    from dataprep.decontaminate import VERSION as DECONTAMINATION_VERSION  # (decontaminate imports this module)

    material = {
        "format_version": FORMAT_VERSION,
        "inputs": [{"name": d.name, "revision": d.dataset.revision, "files": [[f["side"], f["source"], f["sha256"]] for f in d.files]}
                   for d in inputs],
        "adapters": ADAPTER_VERSIONS,
        "decontamination": DECONTAMINATION_VERSION,
        "tokenizer": tokenizer.fingerprint,
        "libraries": libraries(),
        "options": options,
    }
    return sha256_json(material)


def libraries() -> dict[str, str | None]:
    found = {}
    for lib in LIBRARIES:
        try:
            found[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            found[lib] = None
    return found
