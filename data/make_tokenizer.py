"""Regenerate data/tokenizer/: a small byte-level BPE tokenizer trained on data/sample-hh, so that
`make prepare` needs no download. The directory is both a `tokenizer.json` and a Hugging Face
tokenizer directory (tokenizer_config.json names the special tokens).
Run: python data/make_tokenizer.py   (needs the `tokenizers` package)
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB_SIZE = 2048
EOS, PAD = "<|endoftext|>", "<|pad|>"


def main() -> None:
    here = Path(__file__).parent
    texts = []
    for path in sorted((here / "sample-hh").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = here / "tokenizer"
    out.mkdir(exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": None, "pad_token": PAD, "model_max_length": 2048}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
