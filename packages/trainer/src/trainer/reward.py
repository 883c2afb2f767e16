"""The phase-2 reward model (also phase 3's critic): a causal-LM backbone without its LM head, plus a
scalar value head, and the pairwise losses.

Ends of sequences come from the attention mask, never from guessing pad ids, so right or left
padding, pad == eos and BOS == pad tokenizers all work (DeepSpeed-Chat's `num_padding_at_beginning`
is not needed)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HEAD_FILE = "value_head.pt"
HEAD_CONFIG = "reward_model.json"


class RewardModel(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        config = backbone.config
        width = getattr(config, "word_embed_proj_dim", None) or getattr(config, "hidden_size", None) or config.n_embd
        # In the backbone's dtype: a backbone built under ZeRO-3 in bf16/fp16 already is, and ZeRO-3 wants one dtype.
        self.v_head = nn.Linear(width, 1, bias=False, dtype=next(backbone.parameters()).dtype)

    @property
    def config(self):
        return self.backbone.config

    def gradient_checkpointing_enable(self) -> None:
        self.backbone.gradient_checkpointing_enable()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token scalar values, [B, L]. Left-padded rows (phase 3) need `position_ids`."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).last_hidden_state
        return self.v_head(hidden).squeeze(-1)

    def save_pretrained(self, path: Path, state_dict: dict | None = None) -> None:  # same call as a HF model
        """Backbone in Hugging Face format, the head beside it (`value_head.pt`), so phase 3 can load both."""
        state = state_dict if state_dict is not None else self.state_dict()
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        self.backbone.save_pretrained(path, state_dict=backbone)
        torch.save({"weight": state["v_head.weight"].detach().cpu()}, Path(path) / HEAD_FILE)
        (Path(path) / HEAD_CONFIG).write_text(json.dumps({"head": HEAD_FILE, "width": self.v_head.in_features}) + "\n")

    @classmethod
    def from_pretrained(cls, path: Path | str, dropout: float | None = None) -> "RewardModel":
        """A reward model or critic from a phase-2 checkpoint: ours (an HF backbone with value_head.pt
        beside it) or DeepSpeed-Chat's step 2 (one state dict of `rwtransformer.*` and `v_head.weight`
        in pytorch_model.bin or model.safetensors). Anything without a trained head is refused: a
        random head would make phase 3 optimise a random reward."""
        from transformers import AutoModel

        from trainer.models import load_config

        root = _local(path)
        config = load_config(root, dropout)
        if (root / HEAD_FILE).is_file():
            model = cls(AutoModel.from_pretrained(root, config=config))
            model.v_head.load_state_dict(torch.load(root / HEAD_FILE, map_location="cpu", weights_only=True))
            return model
        state = _deepspeed_chat_state(root)
        if state is None:
            raise SystemExit(f"trainer: {path} has no value head ({HEAD_FILE}, or a DeepSpeed-Chat step-2 state dict with "
                             f"{DS_CHAT_PREFIX}* and v_head.weight); a reward model or critic must be a phase-2 checkpoint")
        backbone = {k.removeprefix(DS_CHAT_PREFIX): v for k, v in state.items() if k.startswith(DS_CHAT_PREFIX)}
        model = cls(_backbone_from_state(path, config, backbone))
        model.v_head.weight.data.copy_(state["v_head.weight"].to(model.v_head.weight.dtype))
        return model


# DeepSpeed-Chat's RewardModel keeps its transformer as `rwtransformer` (save_hf_format writes its whole state dict).
DS_CHAT_PREFIX = "rwtransformer."


def _local(path: Path | str) -> Path:
    """A checkpoint directory: `path` itself, or its hub snapshot (weights, head and configs)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.bin", "*.safetensors", "*.pt"]))


def _backbone_from_state(path: Path | str, config, state: dict) -> nn.Module:
    """The backbone of `config` holding `state`'s weights, loaded without a random init first (which at
    1.3B costs minutes, and draws from the global RNG, so a seeded run would sample other answers than
    from the same weights in our format); under ZeRO-3 transformers partitions it as it loads. A state
    dict that lacks any of the backbone's weights is refused: they would stay random."""
    from transformers import MODEL_MAPPING

    try:
        backbone_class = MODEL_MAPPING[type(config)]
    except KeyError:
        raise SystemExit(f"trainer: {path}: transformers has no backbone (AutoModel) class for its {type(config).__name__}") from None
    with torch.device("meta"):  # the names alone: no memory, no init
        skeleton = backbone_class(config)
    missing = [name for name, _ in skeleton.named_parameters() if name not in state]
    if missing:
        raise SystemExit(f"trainer: {path}: its DeepSpeed-Chat state dict lacks {len(missing)} backbone weights "
                         f"({', '.join(missing[:3])}...); is it the checkpoint of this config's model?")
    # Only the backbone's own keys: old transformers also saved buffers (GPT-2's attn.bias) that it no longer has.
    return backbone_class.from_pretrained(None, config=config, state_dict={k: v for k, v in state.items() if k in skeleton.state_dict()})


def _deepspeed_chat_state(root: Path) -> dict | None:
    """The state dict of a DeepSpeed-Chat step-2 checkpoint in `root`, or None when it is not one."""
    for name in ("pytorch_model.bin", "model.safetensors"):
        file = root / name
        if not file.is_file():
            continue
        if name.endswith(".bin"):
            state = torch.load(file, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(str(file))
        if "v_head.weight" in state and any(k.startswith(DS_CHAT_PREFIX) for k in state):
            return state
    return None


def last_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, [B] (works for right and left padding)."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(1).argmax(dim=1)


def end_scores(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The value at each row's last real token: what inference and phase 3 use as the reward."""
    return values.gather(1, last_index(attention_mask).unsqueeze(1)).squeeze(1)


def pairwise_loss(values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str = "last",
                  margin: torch.Tensor | None = None) -> dict:
    """Loss over a [2B, L] batch (chosen rows, then rejected rows).

    kind="last": -logsigmoid(r_chosen - r_rejected) on the end scores (what inference uses; default).
    With `margin` ([B]: the graders' chosen_score - rejected_score), Llama 2's margin loss
    -logsigmoid(r_chosen - r_rejected - margin): pairs the graders separate more widely must be
    separated more widely; a NaN margin (a pair without scores) counts as 0.
    kind="divergence": DeepSpeed-Chat's loss, the per-token -logsigmoid over the span from the first
    position where the two sequences differ to the end of the longer one, averaged per pair; ends
    come from the attention mask, so left padding no longer gives an empty span (NaN)."""
    values = values.float()
    scores = end_scores(values, attention_mask)
    if margin is not None and kind != "last":
        raise ValueError("the score margin applies to the end-score loss (kind='last') only")
    if kind == "last":
        return ranking_loss(scores, margin)
    if kind != "divergence":
        raise ValueError(f"unknown reward loss {kind!r}; use 'last' or 'divergence'")
    half = values.shape[0] // 2
    losses = []
    ends = last_index(attention_mask) + 1
    for i in range(half):
        c_ids, r_ids = input_ids[i], input_ids[half + i]
        c_mask, r_mask = attention_mask[i].bool(), attention_mask[half + i].bool()
        differ = ((c_ids != r_ids) | (c_mask != r_mask)).nonzero()
        start = int(differ[0]) if len(differ) else int(ends[i]) - 1
        end = max(int(ends[i]), int(ends[half + i]))
        losses.append(-F.logsigmoid(values[i, start:end] - values[half + i, start:end]).mean())
    return {"loss": torch.stack(losses).mean(), "chosen": scores[:half].detach(), "rejected": scores[half:].detach()}


def ranking_loss(scores: torch.Tensor, margin: torch.Tensor | None = None) -> dict:
    """-logsigmoid(r_chosen - r_rejected - margin) over end scores [2B] (the B chosen rows, then the B
    rejected rows), padded or packed alike; `margin` [B] (NaN: a pair without scores) counts as 0 when absent."""
    scores = scores.float()
    chosen, rejected = scores[: len(scores) // 2], scores[len(scores) // 2:]
    shift = torch.nan_to_num(margin.float(), nan=0.0) if margin is not None else 0.0
    return {"loss": -F.logsigmoid(chosen - rejected - shift).mean(), "chosen": chosen.detach(), "rejected": rejected.detach()}
