"""Shared fixtures: paths to the project's sample data and to ../shared/data, and tiny tokenizers
trained inside the test session (no downloads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample-hh"
SAMPLE_TOKENIZER = ROOT / "data" / "tokenizer" / "tokenizer.json"
SHARED = ROOT.parent / "shared" / "data"
SHARED_HH = SHARED / "hh-rlhf"
SHARED_HH_FILES = [SHARED_HH / "helpful-online" / "test.jsonl.gz", SHARED_HH / "helpful-rejection-sampled" / "test.jsonl.gz"]
GPT2 = SHARED / "tokenizers" / "gpt2" / "tokenizer.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def needs_shared(*paths: Path):
    missing = [p for p in paths if not p.exists()]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs ../shared/data (missing {missing[0] if missing else ''}); present in CI, absent in a user's fresh clone",
    )


shared_hh = needs_shared(*SHARED_HH_FILES)
shared_gpt2 = needs_shared(GPT2)


def sample_texts() -> list[str]:
    texts = []
    for path in sorted(SAMPLE.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
    return texts


@pytest.fixture(scope="session")
def bpe_json(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json trained here, with an end-of-text special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sample_texts(), trainer=trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory, bpe_json) -> Path:
    """A Hugging Face tokenizer directory whose tokenizer adds a BOS token (unlike GPT-2)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(bpe_json))
    tok.add_special_tokens(["<s>", "<pad>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>", pad_token="<pad>")
    path = tmp_path_factory.mktemp("hfdir")
    hf.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A tiny SentencePiece BPE model with BOS/EOS/PAD ids."""
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("spm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in sample_texts()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "sp"), vocab_size=400, model_type="bpe",
        pad_id=3, minloglevel=2, character_coverage=1.0,
    )
    return root / "sp.model"


# A fresh interpreter in which the given top-level packages are not found, as on a machine where they
# are not installed (e.g. `pip install packages/dataprep` alone: no torch, no trainer). Every finder
# answers "not here" for them, so `import torch` raises ModuleNotFoundError and find_spec gives None.
_BLOCKER = """
import sys
class _Hide:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


def python_without(blocked: set[str], code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER.format(blocked=sorted(blocked)) + code], capture_output=True, text=True, cwd=cwd)
