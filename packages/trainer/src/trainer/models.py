"""Building the models a phase trains: from a hub id or directory, or fresh from a config (tests and
CPU runs) sized to the shards' tokenizer."""

from __future__ import annotations

from pathlib import Path

from dataprep.format import TokenizerInfo


def causal_lm(model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, **overrides):
    """`overrides` are config fields for from_pretrained (e.g. dropout_overrides)."""
    return _build("AutoModelForCausalLM", model_name_or_path, model_config, tokenizer, **overrides)


def backbone(model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo):
    """The transformer without its LM head (for the reward model)."""
    return _build("AutoModel", model_name_or_path, model_config, tokenizer)


# Config fields that hold a dropout probability, across the model families DeepSpeed-Chat trains.
DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "hidden_dropout", "attention_probs_dropout_prob",
                  "hidden_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def dropout_overrides(model_name_or_path: str, p: float | None) -> dict:
    """from_pretrained kwargs that set every dropout of the model's config to p (None: keep them)."""
    if p is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_name_or_path)
    return {name: p for name in DROPOUT_FIELDS if hasattr(config, name)}


def _build(auto_class: str, model_name_or_path: str | None, model_config: Path | None, tokenizer: TokenizerInfo, **overrides):
    import transformers
    from transformers import AutoConfig

    auto = getattr(transformers, auto_class)
    if model_config is not None:
        config = AutoConfig.from_pretrained(str(model_config))
        _fit_config(config, tokenizer)
        return auto.from_config(config)
    model = auto.from_pretrained(model_name_or_path, **overrides)
    _fit_embeddings(model, tokenizer)
    return model


def _fit_config(config, tokenizer: TokenizerInfo) -> None:
    # Embedding rows rounded up to a multiple of 8, as DeepSpeed-Chat does (tensor-core friendly).
    config.vocab_size = 8 * -(-tokenizer.vocab_size // 8)
    config.eos_token_id = tokenizer.eos_id
    config.bos_token_id = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    config.pad_token_id = tokenizer.pad_or_eos


def _fit_embeddings(model, tokenizer: TokenizerInfo) -> None:
    if model.get_input_embeddings().num_embeddings < tokenizer.vocab_size:
        model.resize_token_embeddings(8 * -(-tokenizer.vocab_size // 8))
