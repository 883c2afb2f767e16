"""Reward-model maths: end positions from the attention mask whatever the padding, and both losses
checked by hand (the divergence loss against DeepSpeed-Chat's definition on right padding). Loading:
our checkpoints, DeepSpeed-Chat's step-2 checkpoints (their end scores), and no checkpoint without a head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.reward import RewardModel, end_scores, last_index, pairwise_loss


def test_last_index_right_left_and_pad_equals_eos():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_index(mask).tolist() == [2, 4, 4]
    # pad == eos == 2: the trailing real eos (mask 1) is the end, not the first id-2 token.
    values = torch.arange(15, dtype=torch.float).view(3, 5)
    assert end_scores(values, mask).tolist() == [2.0, 9.0, 14.0]


def test_last_token_loss():
    values = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.5, 0.0]])  # one pair: chosen row, rejected row
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    ids = torch.tensor([[1, 2, 0], [1, 3, 0]])
    out = pairwise_loss(values, ids, mask, kind="last")
    assert math.isclose(out["loss"].item(), -math.log(1 / (1 + math.exp(-1.5))), rel_tol=1e-6)


def test_margin_loss_subtracts_the_score_margin_inside_the_log_sigmoid():
    values = torch.tensor([[0.0, 2.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.5, 0.0], [0.0, 1.0, 1.0]])  # 2 pairs: chosen rows, rejected rows
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]])
    ids = torch.ones_like(mask)
    margin = torch.tensor([1.0, float("nan")])  # the second pair has no scores: margin 0
    # Llama 2: -log sigmoid(r_c - r_r - m), end scores 2 - 0.5 - 1 and 1 - 1 - 0.
    expected = (math.log(1 + math.exp(-0.5)) + math.log(2.0)) / 2
    assert math.isclose(pairwise_loss(values, ids, mask, margin=margin)["loss"].item(), expected, rel_tol=1e-6)
    assert not math.isclose(pairwise_loss(values, ids, mask)["loss"].item(), expected, rel_tol=1e-3)
    with pytest.raises(ValueError, match="kind='last'"):
        pairwise_loss(values, ids, mask, kind="divergence", margin=margin)


def test_divergence_loss_matches_deepspeed_chat_on_right_padding():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 9, 0, 0, 0]])
    mask = (ids != 0).long()
    values = torch.randn(2, 6)
    # DeepSpeed-Chat: from the first differing id to the end of the longer sequence (pad id 0, npb 0).
    div, end = 2, 4
    expected = -F.logsigmoid(values[0, div:end] - values[1, div:end]).mean()
    assert torch.allclose(pairwise_loss(values, ids, mask, kind="divergence")["loss"], expected)


def test_divergence_loss_with_left_padding_is_finite():
    ids = torch.tensor([[0, 5, 6, 7], [0, 0, 5, 9]])
    mask = (ids != 0).long()
    loss = pairwise_loss(torch.randn(2, 4), ids, mask, kind="divergence")["loss"]
    assert torch.isfinite(loss)  # DeepSpeed-Chat's pad-id search gives an empty span and NaN here (#571)


# -- loading a reward model or critic -----------------------------------------------------------

TINY_CONFIG = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=96, bos_token_id=0, eos_token_id=0, pad_token_id=1)


class DeepSpeedChatRewardModel(nn.Module):
    """DeepSpeed-Chat's step-2 RewardModel as its save_hf_format writes it: `rwtransformer` and `v_head`,
    and `forward_value`'s end score: the value before the first pad after the prompt (dschat.md 4.1)."""

    def __init__(self, config, pad_id: int):
        super().__init__()
        from transformers import AutoModel

        self.rwtransformer = AutoModel.from_config(config)
        self.v_head = nn.Linear(config.n_embd, 1, bias=False)
        self.pad_id = pad_id

    def end_scores(self, input_ids, attention_mask, prompt_length: int) -> torch.Tensor:
        values = self.v_head(self.rwtransformer(input_ids, attention_mask=attention_mask, use_cache=False)[0]).squeeze(-1)
        scores = []
        for ids, value in zip(input_ids, values):
            pads = (ids[prompt_length:] == self.pad_id).nonzero()
            end = pads[0].item() + prompt_length if len(pads) else ids.shape[0]
            scores.append(value[end - 1])
        return torch.stack(scores)


def _gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(**TINY_CONFIG)


def _save_deepspeed_chat(model: DeepSpeedChatRewardModel, path, weights: str = "pytorch_model.bin", leave_out: str | None = None) -> None:
    """`model` as DeepSpeed-Chat's save_hf_format writes it: the backbone's config and one state dict;
    `leave_out`: a weight that the state dict then lacks."""
    model.rwtransformer.config.save_pretrained(path)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != leave_out}
    if weights.endswith(".bin"):
        torch.save(state, path / weights)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path / weights))


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_a_deepspeed_chat_step2_checkpoint_gives_its_end_scores(tmp_path, weights):
    torch.manual_seed(0)
    theirs = DeepSpeedChatRewardModel(_gpt2_config(), pad_id=1).eval()
    _save_deepspeed_chat(theirs, tmp_path, weights)
    ours = RewardModel.from_pretrained(tmp_path).eval()
    # prompt (4 tokens) + answer, right-padded with pad id 1: the phase-3 layout without left padding
    ids = torch.tensor([[5, 6, 7, 8, 20, 21, 22, 1, 1], [9, 10, 11, 12, 30, 31, 32, 33, 34]])
    mask = (ids != 1).long()
    with torch.no_grad():
        expected = theirs.end_scores(ids, mask, prompt_length=4)
        got = end_scores(ours(ids, mask), mask)
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)


def test_a_deepspeed_chat_checkpoint_loads_without_a_random_init(tmp_path):
    """Loading the same weights in either format draws the same from the global RNG (the value head's
    init alone, which both build): a random init of the backbone first would change what a seeded run
    samples afterwards, and costs minutes at 1.3B."""
    torch.manual_seed(0)
    theirs = DeepSpeedChatRewardModel(_gpt2_config(), pad_id=1)
    _save_deepspeed_chat(theirs, tmp_path / "theirs")
    RewardModel.from_pretrained(tmp_path / "theirs").save_pretrained(tmp_path / "ours")

    def rng_after_loading(path) -> torch.Tensor:
        torch.manual_seed(1)
        model = RewardModel.from_pretrained(path)
        assert torch.equal(model.v_head.weight, theirs.v_head.weight)
        return torch.random.get_rng_state()

    assert torch.equal(rng_after_loading(tmp_path / "theirs"), rng_after_loading(tmp_path / "ours"))


def test_a_deepspeed_chat_state_dict_without_every_backbone_weight_is_refused(tmp_path):
    _save_deepspeed_chat(DeepSpeedChatRewardModel(_gpt2_config(), pad_id=1), tmp_path, leave_out="rwtransformer.h.1.mlp.c_fc.weight")
    with pytest.raises(SystemExit, match=r"lacks 1 backbone weights \(h.1.mlp.c_fc.weight...\)"):
        RewardModel.from_pretrained(tmp_path)


def test_a_checkpoint_without_a_value_head_is_refused(tmp_path):
    from transformers import AutoModel

    AutoModel.from_config(_gpt2_config()).save_pretrained(tmp_path)  # a backbone, no head: phase 3 would optimise a random reward
    with pytest.raises(SystemExit, match="has no value head"):
        RewardModel.from_pretrained(tmp_path)


def test_our_checkpoint_round_trips(tmp_path):
    from transformers import AutoModel

    torch.manual_seed(1)
    model = RewardModel(AutoModel.from_config(_gpt2_config()))
    model.save_pretrained(tmp_path)
    again = RewardModel.from_pretrained(tmp_path)
    assert torch.equal(again.v_head.weight, model.v_head.weight)
