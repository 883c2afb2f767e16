"""Building the models a phase trains: from a hub id or directory, or fresh from a config (tests and
CPU runs) sized to the shards' tokenizer, with DeepSpeed-Chat's dropout override, and partitioned as
they are created under ZeRO-3."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dataprep.format import TokenizerInfo

# Config fields that hold a dropout probability, across the model families DeepSpeed-Chat trains.
DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "hidden_dropout", "attention_probs_dropout_prob",
                  "hidden_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def causal_lm(model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, dropout: float | None = None,
              attention: str | None = None):
    """`attention`: the attention kernel (transformers' attn_implementation; None: the model's default)."""
    return _build("AutoModelForCausalLM", model_name_or_path, model_config, tokenizer, dropout, attention)


def backbone(model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, dropout: float | None = None,
             attention: str | None = None):
    """The transformer without its LM head (for the reward model)."""
    return _build("AutoModel", model_name_or_path, model_config, tokenizer, dropout, attention)


@contextmanager
def partitioned(ds_config: dict) -> Iterator[None]:
    """Under ZeRO-3, models built inside are partitioned across the ranks as they are created
    (transformers builds them inside deepspeed.zero.Init, as DeepSpeed-Chat does), so no rank ever
    holds the whole model; at other stages this does nothing."""
    if ds_config["zero_optimization"]["stage"] != 3:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig

    keep = HfDeepSpeedConfig(ds_config)  # transformers holds it weakly: it must live while the models are built
    try:
        yield
    finally:
        del keep


def load_config(path: str | Path, dropout: float | None = None):
    """A model's config, with every dropout set to `dropout` (None: as the config has them), as
    DeepSpeed-Chat's --dropout / --actor_dropout / --critic_dropout do."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:  # no such directory or hub id (or offline), or not a model config
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SystemExit(f"trainer: cannot load a model config from {path} ({first})") from None
    if dropout is not None:
        for name in DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, dropout)
    return config


def _build(auto_class: str, model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, dropout: float | None,
           attention: str | None):
    import transformers

    auto = getattr(transformers, auto_class)
    kernel = {"attn_implementation": attention} if attention else {}
    if model_config is not None:
        config = load_config(model_config, dropout)
        _fit_config(config, tokenizer)
        return auto.from_config(config, **kernel)
    model = auto.from_pretrained(model_name_or_path, config=load_config(model_name_or_path, dropout), **kernel)
    _fit_embeddings(model, tokenizer)
    return model


def _fit_config(config, tokenizer: TokenizerInfo) -> None:
    # Embedding rows rounded up to a multiple of 8, as DeepSpeed-Chat does (tensor-core friendly).
    config.vocab_size = 8 * -(-tokenizer.vocab_size // 8)
    config.eos_token_id = tokenizer.eos_id
    config.bos_token_id = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    config.pad_token_id = tokenizer.pad_or_eos


def grows_embeddings(vocab_size: int, tokenizer: TokenizerInfo) -> bool:
    """Whether a model with `vocab_size` embedding rows gets more for `tokenizer` when it loads: the new
    rows are drawn at random (from the seed), so its weights then depend on the seed. A config's
    vocab_size tells this before any weights load."""
    return vocab_size < tokenizer.vocab_size


def _fit_embeddings(model, tokenizer: TokenizerInfo) -> None:
    if grows_embeddings(model.get_input_embeddings().num_embeddings, tokenizer):
        model.resize_token_embeddings(8 * -(-tokenizer.vocab_size // 8))
