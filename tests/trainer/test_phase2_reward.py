"""Phase 2 on CPU: on a small learnable preference set (the chosen reply is polite, the rejected one
rude) the reward model reaches eval accuracy >= 0.9, padded or packed, and its checkpoint reloads with
its head."""

from __future__ import annotations

import json
import random

import pytest
import torch

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE_TOKENIZER
from tests.trainer.conftest import train

QUESTIONS = ["How do I bake bread?", "What is a good book?", "Can you help me with my budget?", "How do I start running?",
             "What should I plant in spring?", "How do I fix my bike?", "Where should I travel?", "How do I learn Python?"]
POLITE = ["Sure, happy to help. Here is what I suggest.", "Of course! Let me explain step by step.", "Great question, thank you for asking."]
RUDE = ["No. Figure it out yourself.", "That is a stupid question.", "Go away, I will not answer."]


@pytest.fixture(scope="module")
def preference_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefs")
    rng = random.Random(0)
    for name, n in (("train.jsonl", 600), ("test.jsonl", 200)):
        with open(root / name, "w") as f:
            for i in range(n):
                prompt = f"\n\nHuman: {rng.choice(QUESTIONS)} ({i})\n\nAssistant:"
                f.write(json.dumps({"chosen": prompt + " " + rng.choice(POLITE), "rejected": prompt + " " + rng.choice(RUDE)}) + "\n")
    out = root / "shards"
    prepare(PrepareOptions(data=[str(root)], out=out, tokenizer=str(SAMPLE_TOKENIZER), split="1,8,1", progress=False))
    return out


# Packed: 2 packs of about 20 pairs each a step (pairs here are short) against 16 pairs unpacked.
@pytest.mark.parametrize("loss,batch", [("last", ("16",)), ("divergence", ("16",)), ("last", ("2", "--packing"))])
def test_reward_model_learns_preferences(preference_shards, tmp_path, loss, batch):
    from trainer.reward import RewardModel

    out = tmp_path / "rm"
    rows = train("trainer.phase2_reward", preference_shards, out, "--per_device_train_batch_size", *batch, "--max_steps", "30",
                 "--learning_rate", "2e-3", "--loss", loss, "--zero_stage", "2")
    evals = [r for r in rows if "eval_accuracy" in r]
    assert evals[-1]["eval_accuracy"] >= 0.9, evals
    assert evals[-1]["chosen_score"] > evals[-1]["rejected_score"]
    model = RewardModel.from_pretrained(out)
    assert model.v_head.weight.abs().sum() > 0 and (out / "value_head.pt").is_file()
    with torch.no_grad():
        values = model(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 1]]))
    assert values.shape == (1, 3)
