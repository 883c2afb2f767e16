"""--packing (trainer/packing.py): on the tiny GPT-2 of configs/, packed and unpacked batches of the same
rows give the same logits per row (atol 1e-5) and the same loss (rel 1e-5) in phase 1 and phase 2, on
every attention path the trainer uses (a block-diagonal mask for SDPA and eager attention, one flattened
row with restarting position ids for the varlen kernel, read here by SDPA); no token attends across
rows; ten model families pack exactly, and Bloom is refused in one line; the collators lay rows out as documented; the sampler's plan is
deterministic per epoch, covers every pack once, splits deterministically across ranks and resumes;
and 2 ranks packed match 1 (training runs: test_phase2_reward.py, test_resume.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataprep.format import Manifest
from tests.trainer.conftest import TINY, train
from trainer import packing, phase1_sft, phase2_reward
from trainer.collate import PairCollator, SFTCollator
from trainer.models import backbone, causal_lm
from trainer.reward import RewardModel, end_scores, pairwise_loss, ranking_loss
from trainer.shard_dataset import ShardDataset

ROUTES = ["sdpa", "eager", "varlen"]  # varlen: the flash-attention layout, run by SDPA on the CPU
PACKS = 3


def same_rows(shards, phase: int, loss: str = "full") -> tuple[dict, dict]:
    """The first PACKS packs of epoch 0, packed, and the same rows (pairs) unpacked, in the same order."""
    rows = ShardDataset(shards, phase)
    pad = rows.tokenizer.pad_or_eos
    if phase == 1:
        packed_collate, unpacked_collate = packing.PackedSFTCollator(pad, loss=loss), SFTCollator(pad, loss=loss)
    else:
        packed_collate, unpacked_collate = packing.PackedCollator(pad, ("chosen_input_ids", "rejected_input_ids")), PairCollator(pad)
    share = packing.loader(rows, packed_collate, PACKS, rank=0, world=1, seed=1).sampler.share()[:PACKS]
    packed = packed_collate(packing.PackedRows(rows).__getitems__(share))
    assert (np.bincount(packed["row_seq"].numpy()) > 1).any(), "no sequence holds two rows: nothing is packed"
    unpacked = unpacked_collate(rows.__getitems__(np.concatenate([items for items, _ in share]).tolist()))
    return packed, unpacked


def inputs(batch: dict, route: str) -> dict:
    return packing.varlen_inputs(batch) if route == "varlen" else packing.model_inputs(batch, route)


def kernel(route: str) -> str:
    return "sdpa" if route == "varlen" else route


def per_row(out: torch.Tensor, batch: dict) -> list[torch.Tensor]:
    """Each packed row's outputs (logits or values), from either input layout."""
    out = out.reshape(batch["input_ids"].shape + out.shape[2:])
    return [out[s, a:a + n] for s, a, n in zip(batch["row_seq"].tolist(), batch["row_start"].tolist(), batch["row_len"].tolist())]


def worst(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def sft_model(shards, attention: str):
    torch.manual_seed(0)
    return causal_lm(None, TINY, Manifest.read(shards).tokenizer, attention=attention).eval()


def reward_model(shards, attention: str):
    torch.manual_seed(0)
    model = RewardModel(backbone(None, TINY, Manifest.read(shards).tokenizer, attention=attention)).eval()
    with torch.no_grad():
        model.v_head.weight.normal_(std=0.1)  # a random head: scores that differ between rows, of the size of logits
    return model


@pytest.mark.parametrize("route", ROUTES)
def test_phase1_packed_logits_and_loss_equal_unpacked(sample_shards, route):
    packed, unpacked = same_rows(sample_shards, 1)
    model = sft_model(sample_shards, kernel(route))
    with torch.no_grad():
        ref = model(**unpacked, use_cache=False)
        given = inputs(packed, route)
        out = model(**given, labels=packed["labels"].view_as(given["input_ids"]), use_cache=False)
    lengths = packed["row_len"].tolist()
    assert worst(per_row(out.logits, packed), [ref.logits[i, :n] for i, n in enumerate(lengths)]) <= 1e-5
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    assert phase1_sft.targets(packed) == phase1_sft.targets(unpacked)  # the same target tokens, so the same token mean
    if route != "varlen":  # what the trainer runs: packed_step on the model's own kernel
        with torch.no_grad():
            step = phase1_sft.packed_step(model, packed)  # the loss summed over the target tokens
        assert step.loss.item() / phase1_sft.targets(packed) == pytest.approx(ref.loss.item(), rel=1e-5)
        assert step.tokens == int(unpacked["attention_mask"].sum()) and step.samples == len(lengths)


@pytest.mark.parametrize("loss", ["last", "all"])
def test_phase1_prompt_masking_gives_the_unpacked_loss(sample_shards, loss):
    packed, unpacked = same_rows(sample_shards, 1, loss=loss)
    model = sft_model(sample_shards, "sdpa")
    with torch.no_grad():
        ref, step = phase1_sft.step(model, unpacked), phase1_sft.packed_step(model, packed)
    unmasked = phase1_sft.targets(same_rows(sample_shards, 1)[0])
    assert phase1_sft.targets(packed) == phase1_sft.targets(unpacked) < unmasked
    assert step.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)  # sums over the same target tokens


@pytest.mark.parametrize("route", ROUTES)
def test_phase2_packed_values_scores_and_loss_equal_unpacked(sample_shards, route):
    packed, unpacked = same_rows(sample_shards, 2)
    model = reward_model(sample_shards, kernel(route))
    with torch.no_grad():
        ref_values = model(unpacked["input_ids"], unpacked["attention_mask"])
        ref = pairwise_loss(ref_values, unpacked["input_ids"], unpacked["attention_mask"])
        values = model(**inputs(packed, route))
    lengths = packed["row_len"].tolist()
    assert worst(per_row(values, packed), [ref_values[i, :n] for i, n in enumerate(lengths)]) <= 1e-5
    scores = values.reshape(-1)[packing.last_tokens(packed)]
    assert (scores - end_scores(ref_values, unpacked["attention_mask"])).abs().max().item() <= 1e-5
    loss = ranking_loss(scores)["loss"]
    assert loss.item() == pytest.approx(ref["loss"].item(), rel=1e-5)
    if route != "varlen":
        with torch.no_grad():
            step = phase2_reward.packed_step(model, packed)
        assert step.loss.item() / step.samples == pytest.approx(ref["loss"].item(), rel=1e-5)  # summed over the pairs
        assert step.samples == len(lengths) // 2


@pytest.mark.parametrize("route", ROUTES)
def test_dpo_packed_answer_logps_and_losses_equal_unpacked(sample_shards, route):
    """DPO sums each row's answer log-probs over its own tokens from its prompt_len: packed or not, the
    same sums (the answer spans included), so the same losses and rewards."""
    from trainer import dpo, phase2_dpo

    packed, unpacked = same_rows(sample_shards, 2)
    model = sft_model(sample_shards, kernel(route))
    with torch.no_grad():
        expected, expected_len = phase2_dpo.answer_logps(model, unpacked, packed=False)
        logits = model(**inputs(packed, route), use_cache=False).logits
    sums, lengths = dpo.packed_answer_logps(logits, packed)
    assert lengths.tolist() == expected_len.tolist() and min(lengths.tolist()) > 0
    assert (sums - expected).abs().max().item() <= 1e-4 and (sums - expected).abs().max().item() / expected.abs().max().item() <= 1e-5
    reference = expected.double() + torch.randn(len(expected), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for objective in (dpo.Objective("sigmoid", 0.1), dpo.Objective("ipo", 0.1), dpo.Objective("simpo", 2.0)):
        ref = reference if objective.needs_reference else None
        mine, theirs = dpo.preference_loss(objective, sums, ref, lengths), dpo.preference_loss(objective, expected, ref, expected_len)
        assert mine.loss.mean().item() == pytest.approx(theirs.loss.mean().item(), rel=1e-5), objective.loss


@pytest.mark.parametrize("phase", [1, 2])
@pytest.mark.parametrize("route", ROUTES)
def test_no_token_attends_across_rows(sample_shards, phase, route):
    """Change one token of a row that has another row after it in its sequence: that row's outputs move
    from there on, every other row's stay as they were. Without the block mask (a plain causal mask
    over the sequence, the control) the next row's outputs move too, so the check can see a leak."""
    packed, _ = same_rows(sample_shards, phase)
    model = (sft_model if phase == 1 else reward_model)(sample_shards, kernel(route))
    seqs, starts, lengths = (packed[k].tolist() for k in ("row_seq", "row_start", "row_len"))
    changed = next(r for r in range(len(seqs)) if any(s == seqs[r] and a > starts[r] for s, a in zip(seqs, starts)))
    at = starts[changed] + lengths[changed] // 2
    edited = {**packed, "input_ids": packed["input_ids"].clone()}
    edited["input_ids"][seqs[changed], at] = 7 if int(packed["input_ids"][seqs[changed], at]) != 7 else 8

    def outputs(batch: dict, given: dict) -> list[torch.Tensor]:
        with torch.no_grad():
            out = model(**given, use_cache=False) if phase == 1 else model(**given)  # the reward model never caches
        return per_row(out.logits if phase == 1 else out, batch)

    before, after = outputs(packed, inputs(packed, route)), outputs(edited, inputs(edited, route))
    others = [r for r in range(len(seqs)) if r != changed]
    assert worst([before[r] for r in others], [after[r] for r in others]) <= 1e-6
    offset = at - starts[changed]
    assert (before[changed][offset:] - after[changed][offset:]).abs().max().item() > 1e-3
    if route == "sdpa":
        plain = lambda b: {"input_ids": b["input_ids"], "attention_mask": torch.ones_like(b["input_ids"])}
        leak_before, leak_after = outputs(packed, plain(packed)), outputs(edited, plain(edited))
        following = [r for r in others if seqs[r] == seqs[changed] and starts[r] > starts[changed]]
        assert worst([leak_before[r] for r in following], [leak_after[r] for r in following]) > 1e-3


def family_config(family: str, vocab: int):
    """A 2-layer config of `family`, 64 wide, its ids in the vocabulary and dropout off."""
    import transformers

    common = {"vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
    decoder = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "max_position_embeddings": 512}
    configs = {
        "opt": lambda: transformers.OPTConfig(num_hidden_layers=2, hidden_size=64, ffn_dim=128, num_attention_heads=2, word_embed_proj_dim=64,
                                              max_position_embeddings=512, dropout=0.0, attention_dropout=0.0),
        "llama": lambda: transformers.LlamaConfig(num_key_value_heads=2, **decoder),
        "qwen2": lambda: transformers.Qwen2Config(num_key_value_heads=2, **decoder),
        "mistral": lambda: transformers.MistralConfig(num_key_value_heads=2, sliding_window=None, **decoder),
        "gemma": lambda: transformers.GemmaConfig(num_key_value_heads=2, head_dim=16, **decoder),
        "gemma2": lambda: transformers.Gemma2Config(num_key_value_heads=2, head_dim=16, sliding_window=512, **decoder),
        "phi3": lambda: transformers.Phi3Config(num_key_value_heads=4, **decoder),
        "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_dropout=0.0, attention_dropout=0.0, **decoder),
        "falcon": lambda: transformers.FalconConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4),
        "mpt": lambda: transformers.MptConfig(n_layers=2, d_model=64, n_heads=4, max_seq_len=512),
        "bloom": lambda: transformers.BloomConfig(n_layer=2, hidden_size=64, n_head=4),
        "falcon-alibi": lambda: transformers.FalconConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, alibi=True),
    }
    config = configs[family]()
    for key, value in common.items():
        setattr(config, key, value)
    return config


# Families checked exact packed against alone: both mask kernels for two, SDPA for the rest but those that
# run eager (gemma2, for its soft-capping; MPT).
PACKED_FAMILIES = [(f, a) for f in ("opt", "llama") for a in ("sdpa", "eager")]
PACKED_FAMILIES += [(f, "sdpa") for f in ("qwen2", "mistral", "gemma", "phi3", "gpt_neox", "falcon")] + [("gemma2", "eager"), ("mpt", "eager")]


@pytest.mark.parametrize("family,attention", PACKED_FAMILIES)
def test_model_families_pack_with_the_block_mask(sample_shards, family, attention):
    """Each family's logits per row, packed with the block mask, equal its logits alone; the loss too.
    DeepSpeed-Chat's OPT ignores packed position ids (it builds its own mask), but takes the 4-D mask."""
    from transformers import AutoModelForCausalLM

    packed, unpacked = same_rows(sample_shards, 1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(family_config(family, 8 * -(-Manifest.read(sample_shards).tokenizer.vocab_size // 8)),
                                             attn_implementation=attention).eval()
    with torch.no_grad():
        ref = model(**unpacked, use_cache=False)
        out = model(**packing.model_inputs(packed, packing.attention_of(model)), labels=packed["labels"], use_cache=False)
    lengths = packed["row_len"].tolist()
    assert worst(per_row(out.logits, packed), [ref.logits[i, :n] for i, n in enumerate(lengths)]) <= 1e-5
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)


@pytest.mark.parametrize("family", ["bloom", "falcon-alibi"])
def test_a_family_that_cannot_take_the_block_mask_is_refused_in_one_line(family):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(family_config(family, 64))
    with pytest.raises(SystemExit) as refused:
        packing.attention_of(model)
    message = str(refused.value)
    assert message.startswith("trainer: --packing cannot run") and "without --packing" in message and "\n" not in message


def pack(rows: list[dict], seqs: list[list[int]]) -> packing.Pack:
    return packing.Pack([{k: np.asarray(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows], np.asarray(seqs, np.int8))


def test_sft_collator_restarts_positions_and_masks_row_starts_and_prompts():
    a, b, c = {"input_ids": [1, 2, 3], "prompt_len": 1}, {"input_ids": [4, 5], "prompt_len": 1}, {"input_ids": [6, 7, 8, 9], "prompt_len": 2}
    packs = [pack([a, b], [[0], [0]]), pack([c], [[0]])]
    batch = packing.PackedSFTCollator(pad_id=0)(packs)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch["segment"].tolist() == [[0, 0, 0, 1, 1], [2, 2, 2, 2, -1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5], [-100, 7, 8, 9, -100]]
    assert (batch["row_seq"].tolist(), batch["row_start"].tolist(), batch["row_len"].tolist()) == ([0, 0, 1], [0, 3, 0], [3, 2, 4])
    masked = packing.PackedSFTCollator(pad_id=0, pad_to=6, loss="last")(packs)
    assert masked["labels"].tolist() == [[-100, 2, 3, -100, 5, -100], [-100, -100, 8, 9, -100, -100]]
    assert masked["position_ids"][1].tolist() == [0, 1, 2, 3, 0, 1]  # the padding is a run of its own


def test_pair_collator_numbers_chosen_rows_then_rejected_rows():
    # Pair 0: chosen in sequence 0, rejected in sequence 1; pair 1: both in sequence 1, after pair 0's rejected row.
    p0 = {"chosen_input_ids": [1, 2], "rejected_input_ids": [1, 3, 3], "prompt_len": 1}
    p1 = {"chosen_input_ids": [4], "rejected_input_ids": [4, 5], "prompt_len": 5}
    batch = packing.PackedCollator(pad_id=0, columns=("chosen_input_ids", "rejected_input_ids"))([pack([p0, p1], [[0, 1], [1, 1]])])
    assert batch["input_ids"].tolist() == [[1, 2, 0, 0, 0, 0], [1, 3, 3, 4, 4, 5]]
    assert batch["segment"].tolist() == [[0, 0, -1, -1, -1, -1], [2, 2, 2, 1, 3, 3]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2, 3], [0, 1, 2, 0, 0, 1]]
    assert batch["prompt_len"].tolist() == [1, 1, 1, 2]  # a prompt never reaches past its row
    assert packing.last_tokens(batch).tolist() == [1, 6 + 3, 6 + 2, 6 + 5]


def random_sampler(rank: int = 0, world: int = 1, parts: int = 1) -> packing.PackSampler:
    lengths = np.random.default_rng(0).integers(1, 65, size=(500, parts))
    return packing.PackSampler(lengths, 64, rank, world, seed=3)


def items_of(sampler) -> list[list[int]]:
    return [items.tolist() for items, _ in sampler]


def test_sampler_plans_each_epoch_once_and_covers_every_row():
    sampler = random_sampler()
    first = items_of(sampler)
    assert sorted(i for pack in first for i in pack) == list(range(500))
    assert items_of(random_sampler()) == first  # the same seed and epoch: the same packs in the same order
    sampler.set_epoch(1)
    second = items_of(sampler)
    assert second != first and sorted(i for pack in second for i in pack) == list(range(500))
    sampler.set_epoch(0)
    assert items_of(sampler) == first


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_the_plan_without_overlap(world):
    whole = items_of(random_sampler())
    shares = [items_of(random_sampler(rank, world)) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1  # every rank takes as many steps
    taken = [pack for share in shares for pack in share]
    assert len(whole) - world < len(taken) <= len(whole)
    assert sorted(map(tuple, taken)) == sorted(map(tuple, whole[:len(taken)]))  # only the last packs are left out
    assert shares == [items_of(random_sampler(rank, world)) for rank in range(world)]


def test_sampler_resumes_after_skipped_packs():
    sampler = random_sampler(parts=2)
    whole = items_of(sampler)
    sampler.skip = 7
    assert items_of(sampler) == whole[7:] and len(sampler) == len(whole) - 7


def test_two_ranks_packed_match_one(fixed_length_shards, tiny_checkpoint, tmp_path):
    """Phase 2 packed (one pair a pack at 32 tokens), 2 ranks of 4 packs against 1 rank of 8: the same pairs
    each step, so the same losses."""
    flags = ("--model_name_or_path", str(tiny_checkpoint), "--max_steps", "3", "--learning_rate", "1e-3", "--lr_scheduler_type", "constant",
             "--eval_iters", "1", "--packing")
    one = train("trainer.phase2_reward", fixed_length_shards, tmp_path / "one", *flags, "--per_device_train_batch_size", "8", model_flags=False)
    two = train("trainer.phase2_reward", fixed_length_shards, tmp_path / "two", *flags, "--per_device_train_batch_size", "4", procs=2,
                model_flags=False)
    losses = lambda rows: [r["loss"] for r in rows if "loss" in r]
    assert len(losses(two)) == 3 and losses(two) == pytest.approx(losses(one), rel=1e-4, abs=1e-5)
