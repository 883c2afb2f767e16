"""What `dataprep prepare` is asked to do: one frozen value, which `dataprep prepare`'s flags map onto
one to one and which Python callers build directly. Stage 1 (inputs.py) checks it and computes the
cache key from it once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dataprep.shards import DEFAULT_SHARD_BYTES


@dataclass(frozen=True)
class PrepareOptions:
    data: Sequence[str]
    """Datasets (--data): registered names or hub ids, or local files and directories; NAME:WEIGHT on all
    of them gives each phase part exact quotas."""
    out: Path
    """The output directory (--out)."""
    tokenizer: str
    """A tokenizer.json, a Hugging Face tokenizer directory or hub id, or a SentencePiece .model."""
    split: str = "2,4,4"
    """Phase 1, 2, 3 weights, DeepSpeed-Chat's data_split."""
    seed: int = 1234
    """Seed of the split and the blend."""
    max_seq_len: int = 512
    """Phases 1 and 2 keep the first N tokens of each row."""
    max_prompt_len: int = 256
    """Phase 3 drops prompts longer than N tokens."""
    data_dir: Path | None = None
    """A local copy of a registered dataset in its native layout."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of registered datasets."""
    eos_token: str | None = None
    """The end-of-text token appended in phases 1 and 2 (default: the tokenizer's own)."""
    shard_bytes: int = DEFAULT_SHARD_BYTES
    """Upper bound on the bytes of one shard."""
    workers: int | None = None
    """Tokenizer threads (None: all cores); the output does not depend on it."""
    strict: bool = False
    """A row with a missing or mistyped text field is an error instead of a counted drop."""
    force: bool = False
    """Rebuild even when the output is up to date."""
    progress: bool = True
    """Progress bars on stderr."""
    columns: dict[str, str] | None = None
    """Users' column names (--columns): canonical name -> the file's column."""
    template: str = "hh"
    """How chat-message lists become text: "hh" (Human/Assistant) or "chat" (the tokenizer's template)."""
    shp_min_score_ratio: float | None = None
    """SHP: drop pairs whose score_ratio is below this."""
    shp_max_pairs_per_post: int | None = None
    """SHP: keep at most this many pairs per post."""
    sft_only_data: Sequence[str] = ()
    """Datasets for phase 1 only (DeepSpeed-Chat's sft_only_data_path)."""
    split_by: str = "row"
    """The split unit: "row" (DeepSpeed-Chat) or "prompt" (rows sharing a prompt stay together)."""
    unsup: Sequence[str] = ()
    """Phase 3's unsupervised (PTX) text: files or directories."""
    unsup_block: int = 512
    """Tokens per PTX row."""
    pairs: str | None = None
    """Which pairs a ranking dataset gives: "best-vs-rest" (None means it), "all" or "best-vs-worst"."""
    keep_ties: bool = False
    """Keep pairs whose two scores (or ranks) are equal instead of dropping them as `tie`."""
    dedup: bool = True
    """Drop rows whose prompt, chosen and rejected repeat an earlier row's (whitespace normalised) as `duplicate`."""
    decontaminate: Sequence[str] = ()
    """Benchmark or eval files (or directories): rows sharing a --decontam-ngram window with them are `contaminated`."""
    decontam_ngram: int = 13
    """Words per window for --decontaminate."""

    def __post_init__(self) -> None:
        # Normalised once, so that equal options compare equal whatever sequence types the caller used.
        for name in ("data", "sft_only_data", "unsup", "decontaminate"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "out", Path(self.out))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
