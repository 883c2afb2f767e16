"""DPO: the losses against hand-computed values, the answer span, the reference cache and its key, each
loss's defaults, and real runs: ln 2 and 1/(4 beta^2) when the policy is the reference, cached =
on-the-fly, reuse, no reuse across ZeRO-0 and ZeRO-3, a reference with another tokenizer refused, and
a toy world where the preferred answer is learnable. (2 ranks against 1: test_distributed.py.)"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dataprep import PrepareOptions, prepare
from tests.trainer.conftest import TINY, train
from trainer import dpo, reference as R

# Two pairs, chosen then rejected: summed answer log-probs, the reference's, and answer lengths.
POLICY, REF, LENGTHS = torch.tensor([-4.0, -6.0, -5.0, -5.5]), torch.tensor([-4.5, -6.0, -4.0, -6.5]), torch.tensor([2, 4, 5, 1])
# h = (pi_c - ref_c) - (pi_r - ref_r): pair 0 (0.5) - (-1) = 1.5; pair 1 (0) - (1) = -1.


def softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("objective, losses, rewards", [
    (dpo.Objective("sigmoid", 0.1), [softplus(-0.15), softplus(0.1)], ([0.05, 0.0], [-0.1, 0.1])),
    (dpo.Objective("sigmoid", 0.1, label_smoothing=0.2), [0.8 * softplus(-0.15) + 0.2 * softplus(0.15), 0.8 * softplus(0.1) + 0.2 * softplus(-0.1)],
     ([0.05, 0.0], [-0.1, 0.1])),
    (dpo.Objective("ipo", 0.1), [(1.5 - 5) ** 2, (-1 - 5) ** 2], ([0.05, 0.0], [-0.1, 0.1])),
    # SimPO: per-token means (chosen -2 and -1.5, rejected -1 and -5.5), beta 2, gamma 0.5: z = -2.5 and 7.5.
    (dpo.Objective("simpo", 2.0, simpo_gamma=0.5), [softplus(2.5), softplus(-7.5)], ([-4.0, -3.0], [-2.0, -11.0])),
])
def test_losses_and_rewards_match_hand_computed_values(objective, losses, rewards):
    scored = dpo.preference_loss(objective, POLICY, REF if objective.needs_reference else None, LENGTHS)
    assert scored.loss.tolist() == pytest.approx(losses, rel=1e-12)
    assert (scored.chosen_reward.tolist(), scored.rejected_reward.tolist()) == (pytest.approx(rewards[0]), pytest.approx(rewards[1]))


def test_answer_logps_sum_the_answer_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    ids = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 1, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    prompt_len = torch.tensor([2, 4])
    total, count = dpo.answer_logps(logits, ids, mask, prompt_len)
    table = logits.log_softmax(-1)
    slow = [sum(table[0, t - 1, ids[0, t]] for t in (2, 3)), table[1, 3, ids[1, 4]]]  # row 0: tokens 2-3 (4 is padding); row 1: token 4
    assert total.tolist() == pytest.approx([float(x) for x in slow], rel=1e-6) and count.tolist() == [2, 1]


def test_the_cache_is_keyed_checked_and_written_atomically(tmp_path):
    values = np.array([[-1.0, -2.0], [-3.5, -0.25], [-7.0, -8.0]])
    cache = R.Cache(tmp_path / "reference" / "train.arrow", key="k1")
    assert cache.read(3) is None  # nothing yet
    cache.write(values)
    assert not list(cache.path.parent.glob("*.partial"))
    assert np.array_equal(cache.read(3), values)
    assert R.Cache(cache.path, key="k2").read(3) is None  # other shards or reference: recompute
    with pytest.raises(SystemExit, match="rows"):
        cache.read(4)
    data = cache.path.read_bytes()
    at = data.index(np.float64(-3.5).tobytes())
    cache.path.write_bytes(data[:at] + np.float64(-3.25).tobytes() + data[at + 8:])  # still readable, one value changed
    with pytest.raises(SystemExit, match="damaged") as caught:
        cache.read(3)
    assert "\n" not in str(caught.value)
    cache.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match="not a readable"):
        cache.read(3)


def test_the_key_follows_the_shards_the_reference_and_the_precision(tmp_path):
    class Shards:
        sha256 = ["a" * 64]

    checkpoint = tmp_path / "ref"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 104}))
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    tokenizer = SimpleNamespace(vocab_size=100)
    before = R.fingerprint(str(checkpoint), None, tokenizer, seed=1, partitioned_on=None)
    key = R.cache_key(Shards, before, "fp32")
    (checkpoint / "model.safetensors").write_bytes(b"weights, trained on")
    assert R.cache_key(Shards, R.fingerprint(str(checkpoint), None, tokenizer, seed=1, partitioned_on=None), "fp32") != key
    Shards.sha256 = ["b" * 64]
    assert len({key, R.cache_key(Shards, before, "fp32"), R.cache_key(Shards, before, "bf16")}) == 3


def test_the_fingerprint_says_how_random_weights_were_drawn(tmp_path):
    """A model built from a config: its seed, and whether ZeRO-3 built it partitioned (on which device's
    generator). A checkpoint: the seed only when loading it grows its embeddings for the tokenizer."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    tokenizer = SimpleNamespace(vocab_size=100)
    built = {R.fingerprint(None, config, tokenizer, seed, where) for seed in (1, 2) for where in (None, "cpu", "cuda")}
    assert len(built) == 6

    checkpoint = tmp_path / "ref"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    for rows, grows in ((100, False), (96, True)):
        (checkpoint / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": rows}))
        loaded = {R.fingerprint(str(checkpoint), None, tokenizer, seed, None) for seed in (1, 2)}
        assert len(loaded) == (2 if grows else 1), rows


def dpo_flags(checkpoint: Path, *extra: str) -> tuple[str, ...]:
    return ("--model_name_or_path", str(checkpoint), "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
            "--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--eval_iters", "2", *extra)


def test_cached_and_on_the_fly_references_give_the_same_losses_from_ln2(fixed_length_shards, tiny_checkpoint, tmp_path):
    cached = train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "cached", *dpo_flags(tiny_checkpoint, "--max_steps", "3"), model_flags=False)
    live = train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "live", *dpo_flags(tiny_checkpoint, "--max_steps", "3", "--precompute_ref", "off"),
                 model_flags=False)
    steps = lambda rows, key="loss": [r[key] for r in rows if key in r]  # noqa: E731
    assert steps(cached)[0] == pytest.approx(math.log(2), abs=1e-6) and steps(cached, "eval_loss")[0] == pytest.approx(math.log(2), abs=1e-6)
    assert steps(cached)[-1] < steps(cached)[0] - 1e-3  # it learns
    for key in ("loss", "reward_margin", "eval_loss", "eval_accuracy"):
        assert steps(live, key) == pytest.approx(steps(cached, key), rel=1e-5, abs=1e-6), key
    assert "computed" in (tmp_path / "cached" / "stdout.txt").read_text()

    # Each run its own output directory (a finished run's is not trained again), with the cached files copied in.
    for run in ("again", "damaged"):
        shutil.copytree(tmp_path / "cached" / "reference", tmp_path / run / "reference")
    again = train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "again", *dpo_flags(tiny_checkpoint, "--max_steps", "1"), model_flags=False)
    assert "train pairs reused" in (tmp_path / "again" / "stdout.txt").read_text()
    assert again[1]["loss"] == cached[1]["loss"]

    side_file = tmp_path / "damaged" / "reference" / "train.arrow"
    side_file.write_bytes(side_file.read_bytes()[:100])  # damaged: the run stops with one line, before any model is built
    line = refusal(fixed_length_shards, tmp_path / "damaged", *dpo_flags(tiny_checkpoint, "--max_steps", "1"))
    assert line.startswith(f"trainer: {side_file}: not a readable reference log-prob file")


def refusal(shards: Path, out: Path, *flags: str) -> str:
    """Run DPO where it must refuse: a non-zero exit and no traceback. Returns its last line."""
    cmd = [sys.executable, "-m", "trainer.phase2_dpo", "--shards", str(shards), "--output_dir", str(out), "--dtype", "fp32", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"}, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_a_reference_with_another_tokenizer_is_refused_before_it_loads(fixed_length_shards, tiny_checkpoint, tmp_path):
    """A reference with another vocabulary would score the shards' ids as its own (here mostly from the
    random embedding rows its 16 grow to) and the cache would keep its log-probs: it is refused first."""
    from dataprep import load_tokenizer
    from dataprep.format import TokenizerInfo
    from tests.trainer.toy import write_tokenizer
    from trainer.checkpoint import save_tokenizer
    from trainer.models import causal_lm

    toy = TokenizerInfo(**load_tokenizer(str(write_tokenizer(tmp_path / "toy"))).describe(), token_type="uint16")
    reference = tmp_path / "toy-reference"
    causal_lm(None, TINY, toy).save_pretrained(reference)
    save_tokenizer(toy, reference)
    out = tmp_path / "dpo"
    line = refusal(fixed_length_shards, out, *dpo_flags(tiny_checkpoint, "--max_steps", "1", "--ref_model_name_or_path", str(reference)))
    assert line.startswith("trainer: ") and str(reference) in line and "tokenizer" in line
    assert not (out / "reference").exists()


def test_a_zero3_reference_built_from_a_config_does_not_reuse_the_zero0_cache(fixed_length_shards, tmp_path):
    """ZeRO-3 builds a config's model partitioned, with other random weights than ZeRO-0 from the same
    seed: it keys another cache, and the policy starts as its reference again (ln 2, not the 0.70 a reused
    ZeRO-0 cache gave)."""
    flags = ("--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3", "--max_steps", "1",
             "--eval_iters", "1")
    train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "zero0", *flags)
    shutil.copytree(tmp_path / "zero0" / "reference", tmp_path / "zero3" / "reference")
    rows = train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "zero3", *flags, "--zero_stage", "3")
    assert "train pairs computed" in (tmp_path / "zero3" / "stdout.txt").read_text()
    first = lambda key: next(r[key] for r in rows if key in r)  # noqa: E731
    assert first("eval_loss") == pytest.approx(math.log(2), abs=1e-6) and first("loss") == pytest.approx(math.log(2), abs=1e-6)


def test_ipo_starts_at_a_quarter_over_beta_squared(fixed_length_shards, tiny_checkpoint, tmp_path):
    rows = train("trainer.phase2_dpo", fixed_length_shards, tmp_path / "ipo", *dpo_flags(tiny_checkpoint, "--max_steps", "1", "--loss", "ipo",
                 "--beta", "0.5"), model_flags=False)
    assert rows[1]["loss"] == pytest.approx(1 / (4 * 0.5**2), rel=1e-6)


def write_preferences(path: Path, rows: int, seed: int = 0) -> Path:
    """The toy world's preferences: whatever the question, answering w7 is preferred to any other word."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(11) if i != 7]
    with open(path, "w") as f:
        for _ in range(rows):
            question = " ".join(rng.choice(words) for _ in range(rng.randint(2, 5)))
            f.write(json.dumps({"prompt": f"Human: {question} Assistant:", "chosen": "w7", "rejected": rng.choice(words)}) + "\n")
    return path


def test_dpo_learns_the_toy_preference(tmp_path):
    from tests.trainer.toy import write_tokenizer

    shards = tmp_path / "shards"
    prepare(PrepareOptions(data=[str(write_preferences(tmp_path / "prefs.jsonl", 600))], out=shards, tokenizer=str(write_tokenizer(tmp_path / "tok")),
                           split="0,1,0", progress=False))
    rows = train("trainer.phase2_dpo", shards, tmp_path / "dpo", "--max_steps", "30", "--per_device_train_batch_size", "16",
                 "--learning_rate", "3e-3", "--beta", "0.1")
    evals = [r["eval_accuracy"] for r in rows if "eval_accuracy" in r]
    assert evals[0] < 0.9 < evals[-1]


def test_packed_dpo_starts_at_ln2_and_both_reference_paths_agree(fixed_length_shards, tiny_checkpoint, tmp_path):
    """--packing: a pair's rows travel in one pack; the cached reference log-probs ride along in the packed
    batch, and the on-the-fly reference scores the same packed batch."""
    runs = {how: train("trainer.phase2_dpo", fixed_length_shards, tmp_path / how, *dpo_flags(tiny_checkpoint, "--max_steps", "3", "--packing",
                                                                                             "--precompute_ref", how), model_flags=False)
            for how in ("on", "off")}
    steps = {how: [r["loss"] for r in rows if "loss" in r] for how, rows in runs.items()}
    assert steps["on"][0] == pytest.approx(math.log(2), abs=1e-6) and steps["on"][-1] < steps["on"][0] - 1e-3
    assert steps["off"] == pytest.approx(steps["on"], rel=1e-5, abs=1e-6)


def test_simpo_takes_its_papers_beta_and_margin_and_the_others_keep_theirs(tmp_path, capsys):
    """SimPO with DPO's beta 0.1 and gamma 0.5 asked for a margin of gamma / beta = 5 nats per token.
    Its own defaults (princeton-nlp/SimPO's SimPOConfig): beta 2.0, gamma 0.25 beta."""
    from trainer import flags as F
    from trainer.phase2_dpo import DPOFlags

    def parse(*argv: str) -> DPOFlags:
        return F.parse(DPOFlags, "DPO", ["--shards", str(tmp_path), "--output_dir", str(tmp_path), "--model_config", str(TINY), *argv])

    simpo = parse("--loss", "simpo")
    assert (simpo.beta, simpo.simpo_gamma) == (2.0, 0.5) and simpo.objective == dpo.Objective("simpo", 2.0, simpo_gamma=0.5)
    assert parse().beta == parse("--loss", "ipo").beta == 0.1
    assert (parse("--loss", "simpo", "--beta", "2.5").simpo_gamma, parse("--loss", "simpo", "--simpo_gamma", "1.0").beta) == (0.625, 2.0)
    assert (parse("--beta", "0.3").beta, parse("--loss", "simpo", "--beta", "10", "--simpo_gamma", "3").objective.simpo_gamma) == (0.3, 3.0)
    with pytest.raises(SystemExit):
        parse("--simpo_gamma", "1.0")  # DPO has no target margin: not silently ignored
    assert "--simpo_gamma applies to --loss simpo" in capsys.readouterr().err
