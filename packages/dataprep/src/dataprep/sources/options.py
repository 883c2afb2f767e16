"""What adapters need from the command line: strictness, the user's column mapping, how chat messages
are rendered, and SHP's optional filters. Built once per `prepare` (the chat template comes from the
tokenizer) and handed to every file's normalizer.

Stage 1 of prepare builds them; stage 2's adapters read them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dataprep.errors import DataprepError

TEMPLATES = ("hh", "chat")
# Canonical names a user may map with --columns (messages: one list of {role, content}, SFT only;
# responses with ranks or scores: a ranking, ranking.py).
MAPPABLE = ("prompt", "chosen", "rejected", "messages", "chosen_score", "rejected_score", "responses", "ranks", "scores")
# --pairs: which pairs a ranking gives (ranking.py).
PAIR_RULES = ("best-vs-rest", "all", "best-vs-worst")


@dataclass(frozen=True)
class AdapterOptions:
    strict: bool = False
    columns: dict[str, str] | None = None  # canonical name -> the user's column
    template: str = "hh"  # how chat messages become text: "hh" (Human/Assistant) | "chat" (tokenizer template)
    chat_template: str | None = None  # the tokenizer's Jinja chat template, when template == "chat"
    special_tokens: tuple[tuple[str, str], ...] = ()  # bos_token/eos_token strings the template may use
    strip_bos: str | None = None  # a leading BOS string to cut from rendered text: the tokenizer adds its own
    shp_min_score_ratio: float | None = None
    shp_max_pairs_per_post: int | None = None
    pairs: str = "best-vs-rest"  # a ranking's pairs: one of PAIR_RULES
    keep_ties: bool = False  # keep pairs whose two scores (or ranks) are equal

    @property
    def chat_template_sha256(self) -> str | None:
        return hashlib.sha256(self.chat_template.encode()).hexdigest() if self.chat_template else None


def parse_columns(text: str) -> dict[str, str]:
    """`prompt=question,chosen=good,rejected=bad` -> {"prompt": "question", ...}."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, column = (s.strip() for s in item.partition("="))
        if not sep or not column:
            raise DataprepError(f"--columns {text}: '{item}' is not NAME=COLUMN (e.g. prompt=question,chosen=good,rejected=bad)")
        if name not in MAPPABLE:
            raise DataprepError(f"--columns {text}: '{name}' is not one of {', '.join(MAPPABLE)}")
        if name in mapping:
            raise DataprepError(f"--columns {text}: '{name}' is mapped twice")
        mapping[name] = column
    if not mapping:
        raise DataprepError(f"--columns {text!r}: give at least one NAME=COLUMN")
    return mapping


def check(template: str, min_score_ratio: float | None, max_pairs_per_post: int | None) -> None:
    if template not in TEMPLATES:
        raise DataprepError(f"--template {template}: use one of {', '.join(TEMPLATES)}")
    if min_score_ratio is not None and not min_score_ratio >= 1:
        raise DataprepError(f"--shp-min-score-ratio {min_score_ratio}: must be at least 1 (SHP's score_ratio is >= 1)")
    if max_pairs_per_post is not None and max_pairs_per_post < 1:
        raise DataprepError(f"--shp-max-pairs-per-post {max_pairs_per_post}: must be at least 1")


def from_prepare(opts, tokenizer, datasets) -> AdapterOptions:
    """AdapterOptions from PrepareOptions, the loaded tokenizer (its chat template) and the resolved
    datasets (options that no dataset would use are errors, not silently ignored)."""
    check(opts.template, opts.shp_min_score_ratio, opts.shp_max_pairs_per_post)
    shp_flags = [f for f, v in (("--shp-min-score-ratio", opts.shp_min_score_ratio), ("--shp-max-pairs-per-post", opts.shp_max_pairs_per_post)) if v is not None]
    if shp_flags and not any(d.adapter == "shp" for d in datasets):
        raise DataprepError(f"{shp_flags[0]}: no SHP dataset among --data (use --data shp or stanfordnlp/SHP)")
    if opts.template != "chat":
        return AdapterOptions(strict=opts.strict, columns=opts.columns, template=opts.template,
                              shp_min_score_ratio=opts.shp_min_score_ratio, shp_max_pairs_per_post=opts.shp_max_pairs_per_post,
                              pairs=opts.pairs or PAIR_RULES[0], keep_ties=opts.keep_ties)
    if not tokenizer.chat_template:
        raise DataprepError(f"--template chat: the tokenizer {opts.tokenizer} has no chat template "
                            "(chat_template in tokenizer_config.json); use --template hh or a tokenizer that has one")
    specials = tokenizer.special_tokens
    bos = specials.get("bos_token")
    adds_bos = tokenizer.bos_id is not None and tokenizer.encode([""])[0][:1] == [tokenizer.bos_id]
    return AdapterOptions(strict=opts.strict, columns=opts.columns, template="chat", chat_template=tokenizer.chat_template,
                          special_tokens=tuple(sorted(specials.items())), strip_bos=bos if adds_bos and bos else None,
                          shp_min_score_ratio=opts.shp_min_score_ratio, shp_max_pairs_per_post=opts.shp_max_pairs_per_post,
                          pairs=opts.pairs or PAIR_RULES[0], keep_ties=opts.keep_ties)
