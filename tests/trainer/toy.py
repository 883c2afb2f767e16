"""The toy world of the phase-3 tests: a 16-word tokenizer, prompts of random words, a random tiny
GPT-2 actor and a reward model whose score is a fixed function of the last token, highest for one
word. The reward model shares the actor's token embeddings and its transformer blocks are zeroed, so
its score for a token is v . ln_f(wte[token]): PPO can raise it by moving the actor's output towards
that word. `build` writes it all: tokenizer, shards (phase-3 prompts and PTX blocks), actor and reward
model checkpoints."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

from dataprep import PrepareOptions, prepare
from dataprep.format import Manifest, TokenizerInfo
from tests.trainer.conftest import TINY
from trainer.checkpoint import save_tokenizer
from trainer.models import backbone, causal_lm
from trainer.reward import RewardModel

WORDS = ["<|endoftext|>", "<|pad|>", "<unk>", "Human:", "Assistant:"] + [f"w{i}" for i in range(11)]
FAVOURED = "w7"
TOP_SCORE = 4.0


def write_tokenizer(root: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(WORDS[:3])
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"eos_token": WORDS[0], "pad_token": WORDS[1]}))
    return root / "tokenizer.json"


def write_prompts(path: Path, rows: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = WORDS[5:]
    with open(path, "w") as f:
        for _ in range(rows):
            question = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
            f.write(json.dumps({"prompt": f"Human: {question} Assistant:", "chosen": rng.choice(words), "rejected": None}) + "\n")
    return path


def write_documents(path: Path, rows: int, seed: int = 1) -> Path:
    """Unsupervised text with a strong pattern (counting up), which an LM loss learns quickly."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(rows):
            start = rng.randint(0, 5)
            f.write(json.dumps({"text": " ".join(f"w{i}" for i in range(start, 11))}) + "\n")
    return path


def token_reward_model(actor, tokenizer: TokenizerInfo, favoured: int) -> tuple[RewardModel, torch.Tensor]:
    """A reward model whose score at a position is a fixed function of the token there."""
    model = RewardModel(backbone(None, TINY, tokenizer))
    gpt = model.backbone
    with torch.no_grad():
        gpt.wte.weight.copy_(actor.transformer.wte.weight)
        gpt.wpe.weight.zero_()
        for block in gpt.h:  # blocks add nothing to the residual stream: hidden = ln_f(wte[token])
            for layer in (block.attn.c_proj, block.mlp.c_proj):
                layer.weight.zero_()
                layer.bias.zero_()
        hidden = gpt.ln_f(gpt.wte.weight)
        model.v_head.weight.copy_((TOP_SCORE * hidden[favoured] / hidden[favoured].norm() ** 2).unsqueeze(0))
        scores = hidden @ model.v_head.weight[0]
    return model, scores


def with_generation_config(checkpoint: Path, out: Path, **fields) -> Path:
    """A copy of `checkpoint` whose generation_config.json also sets `fields` (a chat model's
    repetition_penalty, say), which `model.generate` would apply by default."""
    shutil.copytree(checkpoint, out)
    path = out / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return out


def write_deepspeed_chat(reward: Path, out: Path) -> Path:
    """The reward model at `reward` (our format) as DeepSpeed-Chat's step 2 saves it: the backbone's
    config.json and one state dict of `rwtransformer.*` and `v_head.weight` (pytorch_model.bin), with
    the tokenizer beside them."""
    from trainer.reward import DS_CHAT_PREFIX

    model = RewardModel.from_pretrained(reward)
    out.mkdir(parents=True)
    model.config.save_pretrained(out)
    state = {(DS_CHAT_PREFIX + name.removeprefix("backbone.") if name.startswith("backbone.") else name): tensor
             for name, tensor in model.state_dict().items()}
    torch.save(state, out / "pytorch_model.bin")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(reward / name, out / name)
    return out


def build(root: Path) -> dict:
    tokenizer_json = write_tokenizer(root / "tokenizer")
    shards = root / "shards"
    prepare(PrepareOptions(data=[str(write_prompts(root / "prompts.jsonl", 400))], out=shards, tokenizer=str(tokenizer_json),
                           split="0,0,1", max_prompt_len=16, unsup=[str(write_documents(root / "docs.jsonl", 300))], unsup_block=16,
                           progress=False))
    tokenizer = Manifest.read(shards).tokenizer
    torch.manual_seed(0)
    actor = causal_lm(None, TINY, tokenizer)
    actor.save_pretrained(root / "actor")
    save_tokenizer(tokenizer, root / "actor")
    reward, scores = token_reward_model(actor, tokenizer, WORDS.index(FAVOURED))
    reward.save_pretrained(root / "reward")
    save_tokenizer(tokenizer, root / "reward")
    return {"root": root, "shards": shards, "actor": root / "actor", "reward": root / "reward", "scores": scores}
