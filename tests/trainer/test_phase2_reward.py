"""Phase 2 on CPU: on a small learnable preference set (the chosen reply is polite, the rejected one
rude) the reward model reaches eval accuracy >= 0.9, padded or packed, and its checkpoint reloads with
its head; --margin_loss subtracts each pair's score margin, and is refused on shards without scores."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch

from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE_TOKENIZER
from tests.trainer.conftest import TINY, train
from trainer import flags as F
from trainer.phase2_reward import RewardFlags

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


@pytest.fixture(scope="module")
def scored_shards(tmp_path_factory):
    """Phase-2 shards with the graders' scores: a local copy shaped like openbmb/UltraFeedback."""
    from tests.dataprep.test_rankings import write_ultrafeedback

    root = tmp_path_factory.mktemp("scored")
    write_ultrafeedback(root, prompts=120)
    out = root / "shards"
    prepare(PrepareOptions(data=["ultrafeedback-raw"], data_dir=root, out=out, tokenizer=str(SAMPLE_TOKENIZER), split="1,8,1", progress=False))
    return out


def test_margin_loss_step_uses_each_pairs_score_margin(scored_shards, tmp_path):
    """The recipe's step on a batch of real scored shards, with a tiny reward model: its loss is the
    hand-computed -logsigmoid(r_c - r_r - (chosen_score - rejected_score))."""
    from trainer.collate import PairCollator
    from trainer.models import backbone
    from trainer.phase2_reward import recipe
    from trainer.reward import RewardModel, end_scores
    from trainer.shard_dataset import ShardDataset

    pairs = ShardDataset(scored_shards, 2)
    rows = [pairs[i] for i in range(8)]
    batch = PairCollator(pad_id=0)(rows)
    torch.manual_seed(0)
    model = RewardModel(backbone(None, TINY, pairs.tokenizer))
    flags = RewardFlags(shards=scored_shards, output_dir=tmp_path, model_config=TINY, margin_loss=True)
    with torch.no_grad():
        loss = recipe(flags).step(model, batch).loss / 8  # the step sums over its 8 pairs
        scores = end_scores(model(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
    margin = torch.tensor([r["chosen_score"] - r["rejected_score"] for r in rows])
    assert torch.all(margin > 0)
    expected = -torch.nn.functional.logsigmoid(scores[:8] - scores[8:] - margin).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    plain = -torch.nn.functional.logsigmoid(scores[:8] - scores[8:]).mean()
    assert not torch.allclose(loss, plain, atol=1e-3)


def test_margin_loss_on_shards_without_scores_is_refused_in_one_line(sample_shards, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "trainer.phase2_reward", "--shards", str(sample_shards), "--model_config", str(TINY),
                           "--output_dir", str(tmp_path / "rm"), "--learning_rate", "1e-3", "--max_steps", "1", "--dtype", "fp32", "--margin_loss"],
                          capture_output=True, text=True, env={**env, "DS_ACCELERATOR": "cpu"}, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("trainer: --margin_loss:") and "no chosen_score / rejected_score" in last
    assert not (tmp_path / "rm" / "metrics.jsonl").exists()
    with pytest.raises(SystemExit):  # the margin belongs to the end-score loss: a usage error (exit 2)
        F.parse(RewardFlags, "", ["--shards", str(sample_shards), "--output_dir", str(tmp_path), "--model_config", str(TINY),
                                  "--margin_loss", "--loss", "divergence"])
