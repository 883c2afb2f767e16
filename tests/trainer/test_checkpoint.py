"""Checkpoints hold the shards' tokenizer (trainer/checkpoint.py save_tokenizer): for each tokenizer kind
dataprep accepts (a tokenizer.json, a Hugging Face directory, a SentencePiece model), AutoTokenizer on a
checkpoint gives the shards' ids and dataprep (so the next phase) their fingerprint, on tiny llama and
qwen2 models; where the model's family makes transformers build another tokenizer (qwen2's own class),
the save says so in one line and names what loads the shards' one. The phase chains run on both
families: phase 1 -> DPO on SentencePiece shards and llama, phase 1 + phase 2 -> phase 3 on a Qwen-style
directory's shards and qwen2 (tokenizer.json shards chain in test_phase3_ppo.py and test_dpo.py, on GPT-2;
their llama and qwen2 checkpoints are the round trips here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep import PrepareOptions, load_tokenizer, prepare
from dataprep.format import Manifest, TokenizerInfo
from tests.conftest import SAMPLE, SAMPLE_TOKENIZER, python_without, sample_texts
from tests.trainer.conftest import train
from trainer.checkpoint import save_tokenizer

TEXTS = sample_texts()[:60] + ["\n\nHuman: hi\n\n\nAssistant:  two  spaces\tand a tab ", "café ① ２ 😀 </s> <s>"]


def family_config(family: str, path: Path) -> Path:
    """A tiny llama or qwen2 config, written to `path` (the trainers size its vocabulary to the shards')."""
    from transformers import LlamaConfig, Qwen2Config

    shape = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 512, "vocab_size": 512}
    config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family](**shape)
    config.to_json_file(path)
    return path


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory) -> Path:
    """A Qwen-style Hugging Face directory (Qwen2Tokenizer, its own pre-tokenizer) over the sample's BPE."""
    from transformers import Qwen2Tokenizer

    model = json.loads(SAMPLE_TOKENIZER.read_text(encoding="utf-8"))["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    path = tmp_path_factory.mktemp("qwen")
    Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|endoftext|>", pad_token="<|pad|>", unk_token=None).save_pretrained(path)
    return path


@pytest.fixture
def kinds(hf_dir, spm_model, qwen_dir) -> dict[str, Path]:
    return {"tokenizer.json": SAMPLE_TOKENIZER, "hf-dir": hf_dir, "sentencepiece": spm_model, "qwen-dir": qwen_dir}


def info_of(spec: Path) -> TokenizerInfo:
    """What a manifest records of the tokenizer at `spec` (prepare writes describe())."""
    return TokenizerInfo(token_type="uint16", **load_tokenizer(str(spec)).describe())


def autotokenizer_ids(checkpoint: Path, texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(checkpoint))(texts)["input_ids"]


# (kind, family, AutoTokenizer exact). qwen2 models get transformers' Qwen2Tokenizer whatever the
# tokenizer_config says, which splits text its own way: exact only for a Qwen-style tokenizer.
ROUND_TRIPS = [(kind, "llama", True) for kind in ("tokenizer.json", "hf-dir", "sentencepiece")]
ROUND_TRIPS += [(kind, "qwen2", False) for kind in ("tokenizer.json", "hf-dir", "sentencepiece")] + [("qwen-dir", "qwen2", True)]


@pytest.mark.parametrize("kind,family,exact", ROUND_TRIPS)
def test_autotokenizer_on_a_checkpoint_gives_the_shards_ids(kinds, kind, family, exact, tmp_path, capsys):
    from transformers import PreTrainedTokenizerFast

    spec = kinds[kind]
    shards, info = load_tokenizer(str(spec)), info_of(spec)
    family_config(family, tmp_path / "config.json")  # what save_model leaves first: AutoTokenizer reads its model_type
    save_tokenizer(info, tmp_path)
    said = capsys.readouterr().out.strip().splitlines()
    expected = shards.encode(TEXTS)
    if exact:
        assert said == []
        assert autotokenizer_ids(tmp_path, TEXTS) == expected
        assert load_tokenizer(str(tmp_path)).fingerprint == info.fingerprint  # what the next phase checks
    else:
        assert len(said) == 1 and said[0].startswith(f"trainer: AutoTokenizer.from_pretrained('{tmp_path}') builds Qwen2Tokenizer")
        assert autotokenizer_ids(tmp_path, TEXTS) != expected  # what the line warns of
        assert PreTrainedTokenizerFast.from_pretrained(str(tmp_path))(TEXTS)["input_ids"] == expected  # what it names
        assert load_tokenizer(str(tmp_path)).fingerprint != info.fingerprint  # the next phase refuses it


def test_a_sentencepiece_checkpoint_keeps_its_model_and_reloads_as_it(spm_model, tmp_path):
    """The .model is kept beside its conversion, and the directory reloads in dataprep as that model (same
    fingerprint, same ids); edited afterwards, it reloads as what it then holds."""
    info = info_of(spm_model)
    family_config("llama", tmp_path / "config.json")
    save_tokenizer(info, tmp_path)
    assert (tmp_path / "tokenizer.model").read_bytes() == spm_model.read_bytes()
    reloaded = load_tokenizer(str(tmp_path))
    assert (reloaded.kind, reloaded.fingerprint) == ("sentencepiece", info.fingerprint)
    config = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    config["normalizer"] = None  # another tokenizer.json than the one checked: the record no longer holds
    (tmp_path / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    assert load_tokenizer(str(tmp_path)).fingerprint != info.fingerprint


def test_without_protobuf_a_sentencepiece_save_says_so_in_one_line(spm_model, tmp_path):
    """transformers converts a SentencePiece model only with protobuf: without it the save still keeps the
    model and says, in one line, that AutoTokenizer cannot load the checkpoint."""
    info = info_of(spm_model)
    code = (f"from pathlib import Path\nfrom dataprep.format import TokenizerInfo\nfrom trainer.checkpoint import save_tokenizer\n"
            f"save_tokenizer(TokenizerInfo(**{info.__dict__!r}), Path({str(tmp_path)!r}))\n")
    proc = python_without({"google"}, code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trainer:")]
    assert len(lines) == 1 and "cannot convert the shards' SentencePiece model" in lines[0]
    assert (tmp_path / "tokenizer.model").read_bytes() == spm_model.read_bytes()


def shards_for(spec: Path, out: Path) -> Path:
    prepare(PrepareOptions(data=[str(SAMPLE)], out=out, tokenizer=str(spec), split="6,2,2", max_seq_len=64, max_prompt_len=32, progress=False))
    return out


SMALL = ("--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_steps", "2", "--eval_iters", "1")


def assert_holds_the_shards_tokenizer(checkpoint: Path, shards: Path, spec: Path) -> None:
    assert load_tokenizer(str(checkpoint)).fingerprint == Manifest.read(shards).tokenizer.fingerprint
    assert autotokenizer_ids(checkpoint, TEXTS) == load_tokenizer(str(spec)).encode(TEXTS)


def test_sentencepiece_shards_chain_on_llama(spm_model, tmp_path):
    """Meta's Llama-2 case: phase 1 on SentencePiece shards, then DPO from its checkpoint (before, DPO and
    PPO stopped there: the checkpoint held the .model only, which AutoTokenizer could not load)."""
    shards = shards_for(spm_model, tmp_path / "shards")
    train("trainer.phase1_sft", shards, tmp_path / "sft", *SMALL, "--model_config", str(family_config("llama", tmp_path / "config.json")),
          model_flags=False)
    dpo = train("trainer.phase2_dpo", shards, tmp_path / "dpo", *SMALL, "--model_name_or_path", str(tmp_path / "sft"), model_flags=False)
    assert any("loss" in row for row in dpo)
    for checkpoint in ("sft", "dpo"):
        assert_holds_the_shards_tokenizer(tmp_path / checkpoint, shards, spm_model)


def test_hf_directory_shards_chain_on_qwen2(qwen_dir, tmp_path):
    """A qwen2 model on shards of a Qwen-style tokenizer directory: phases 1 and 2, then phase 3 from both."""
    shards = shards_for(qwen_dir, tmp_path / "shards")
    config = ("--model_config", str(family_config("qwen2", tmp_path / "config.json")))
    train("trainer.phase1_sft", shards, tmp_path / "sft", *SMALL, *config, model_flags=False)
    train("trainer.phase2_reward", shards, tmp_path / "rm", *SMALL, *config, model_flags=False)
    assert len(phase3(shards, tmp_path / "sft", tmp_path / "rm", tmp_path / "ppo")) == 1
    for checkpoint in ("sft", "rm", "ppo/actor", "ppo/critic"):
        assert_holds_the_shards_tokenizer(tmp_path / checkpoint, shards, qwen_dir)


def phase3(shards: Path, actor: Path, critic: Path, out: Path) -> list[dict]:
    return train("trainer.phase3_ppo", shards, out, "--actor_model_name_or_path", str(actor), "--critic_model_name_or_path", str(critic),
                 "--max_steps", "1", "--per_device_generation_batch_size", "2", "--per_device_training_batch_size", "2",
                 "--max_answer_seq_len", "4", "--num_warmup_steps", "0", model_flags=False)
