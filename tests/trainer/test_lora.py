"""LoRA through peft: what trains, the learning rates, the refusal of a name that matches nothing or a
tied weight, freezing through the module, the merged checkpoint, and a real --only_optimize_lora run.
(ZeRO-2/3 with 2 ranks: test_distributed.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from dataprep.format import Manifest
from tests.trainer.conftest import TINY, train
from trainer import lora, runtime
from trainer.checkpoint import save_model
from trainer.models import backbone, causal_lm
from trainer.reward import RewardModel

BLOCKS = lora.LoraSpec(dim=4, module_name="transformer.h.", only_optimize=False, learning_rate=5e-4)
TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # GPT-2's linear layers in every block


@pytest.fixture
def tokenizer(fixed_length_shards):
    return Manifest.read(fixed_length_shards).tokenizer


def test_lora_layers_freeze_their_weights_and_only_optimize_trains_lora_and_the_head(tokenizer):
    model = lora.add(causal_lm(None, TINY, tokenizer), BLOCKS)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"transformer.h.{i}.{t}.base_layer.weight" for i in range(2) for t in TARGETS}

    reward = lora.add(RewardModel(backbone(None, TINY, tokenizer)), lora.LoraSpec(4, "h.", True, 5e-4))
    trained = {n for n, p in reward.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in reward.named_parameters() if lora.is_lora(n)} | {"v_head.weight"}
    assert lora.trainable_summary(reward).startswith(f"trainable parameters: {sum(reward.state_dict()[n].numel() for n in trained):,} of ")


def test_lora_weights_get_their_own_learning_rate(tokenizer):
    model = lora.add(causal_lm(None, TINY, tokenizer), BLOCKS)
    spec = runtime.EngineSpec(1, 1, 0, "fp32")
    opt = runtime.optimizer(model, spec, runtime.OptimSpec(1e-3, 0.1, "constant", 0, 10, lora_learning_rate=5e-4))
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = 0.0 if any(k in name for k in runtime.NO_DECAY) else 0.1
            assert by_param[id(param)] == ((5e-4 if lora.is_lora(name) else 1e-3), decay), name


def test_a_module_name_that_matches_nothing_is_one_line_naming_the_layers(tokenizer):
    with pytest.raises(SystemExit) as caught:
        lora.add(causal_lm(None, TINY, tokenizer), lora.LoraSpec(4, "decoder.layers.", False, 5e-4))
    message = str(caught.value)
    assert "\n" not in message and "'decoder.layers.'" in message and "transformer.h.N.attn.c_attn" in message


def test_the_merged_checkpoint_gives_the_lora_models_logits(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    plain = causal_lm(None, TINY, tokenizer).eval()
    ids = torch.randint(0, tokenizer.vocab_size, (3, 12))
    with torch.no_grad():
        before = plain(ids).logits
        model = lora.add(plain, BLOCKS)
        for name, param in model.named_parameters():
            if ".lora_B." in name:  # B starts at zero: give the update a value, as training would
                param.normal_(std=0.2)
        expected = model(ids).logits
    assert (expected - before).abs().max() > 1e-2  # the LoRA update changes the output

    save_model(model, tmp_path, rank=0, zero_stage=0)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert not any("lora" in n or "base_layer" in n for n in loaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-5, rtol=0)


def test_only_optimize_lora_changes_only_the_lora_layers_by_a_low_rank_update(fixed_length_shards, tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    train("trainer.phase1_sft", fixed_length_shards, out, "--model_name_or_path", str(tiny_checkpoint), "--max_steps", "3",
          "--learning_rate", "1e-2", "--lora_learning_rate", "1e-2", "--eval_iters", "1", "--per_device_train_batch_size", "8",
          "--lora_dim", "2", "--lora_module_name", "transformer.h.", "--only_optimize_lora", model_flags=False)
    assert "trainer: trainable parameters: " in (out / "stdout.txt").read_text()
    start, end = load_file(tiny_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert start.keys() == end.keys()
    lora_weights = {f"transformer.h.{i}.{t}.weight" for i in range(2) for t in TARGETS}
    for name in start:
        if name in lora_weights:
            delta = (end[name] - start[name]).double()
            assert delta.abs().max() > 1e-4 and torch.linalg.matrix_rank(delta, atol=1e-6) <= 2, name
        else:
            assert torch.equal(start[name], end[name]), name


class SharedWeight(torch.nn.Module):
    """Two linear layers that share one weight, as an LM head shares the input embeddings'."""

    def __init__(self):
        super().__init__()
        self.proj_in, self.proj_out = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
        self.proj_out.weight = self.proj_in.weight


def tied_model(kind: str, tokenizer, tmp_path):
    """A tiny model whose `lm_head` (or `proj_out`) weight is tied to another module's."""
    if kind == "gpt2":
        return causal_lm(None, TINY, tokenizer)
    if kind == "opt":
        config = tmp_path / "opt.json"
        config.write_text(json.dumps({"model_type": "opt", "hidden_size": 16, "word_embed_proj_dim": 16, "ffn_dim": 32,
                                      "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64}))
        return causal_lm(None, config, tokenizer)
    return SharedWeight()


@pytest.mark.parametrize("kind, module_name, tied_to", [("gpt2", "lm_head", "transformer.wte.weight"),
                                                         ("opt", "lm_head", "model.decoder.embed_tokens.weight"),
                                                         ("shared", "proj", "proj_out.weight")])
def test_a_layer_whose_weight_is_tied_to_another_module_is_refused_in_one_line(kind, module_name, tied_to, tokenizer, tmp_path):
    """Its merged update would change the other module too (the LM head's, the input embeddings)."""
    model = tied_model(kind, tokenizer, tmp_path)
    with pytest.raises(SystemExit) as caught:
        lora.add(model, lora.LoraSpec(4, module_name, False, 5e-4))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"trainer: --lora_module_name {module_name!r} puts LoRA on ")
    assert f"whose weight is tied to {tied_to}" in message
    assert not lora.has_lora(model)  # refused before anything was injected


@pytest.mark.parametrize("module_name", ["transformer.h.", "lm_head"])
def test_every_lora_layers_base_weight_is_frozen_through_its_module(module_name, tokenizer, monkeypatch):
    """Freezing goes by the module, not the name: named_parameters lists the tied head's weight once,
    as transformer.wte.weight, so a name-based freeze left lm_head training (the tie check is switched
    off here to show it)."""
    from peft.tuners.lora import LoraLayer

    monkeypatch.setattr(lora, "_refuse_tied", lambda *args: None, raising=False)
    model = lora.add(causal_lm(None, TINY, tokenizer), lora.LoraSpec(4, module_name, False, 5e-4))
    bases = {name: layer.get_base_layer().weight for name, layer in model.named_modules() if isinstance(layer, LoraLayer)}
    assert bases and all(name.startswith(module_name) for name in bases)
    assert [name for name, weight in bases.items() if weight.requires_grad] == []
