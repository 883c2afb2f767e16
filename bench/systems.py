"""The systems `bench/run.py` compares, one per subprocess so that each has its own peak RSS.

    python bench/systems.py SYSTEM INPUT OUT [WORKERS] [DECONTAMINATE...]

  ours      `dataprep prepare` (split 6,2,2, seed 1234, GPT-2, max_seq_len 512, max_prompt_len 256),
            deduplicating as by default; further arguments are --decontaminate files
  ours-plain  the same with --no-dedup: the baseline of the screen's cost
  dschat    a DeepSpeed-Chat-style pipeline written from ../shared/reference/dschat.md section 3:
            per-row tokenizer calls, padding to max_seq_len, int64 tensors, the BatchEncodings kept
            in a PromptDataset and pickled with torch.save per phase
  dschat-load  torch.load of the dschat output (what every rank does at start-up)
  datasets  HF datasets: map(batched=True) + save_to_disk, num_proc WORKERS
  ceiling   the tokenizer's own encode_batch over the same texts, in memory (import and JSON parse
            included): the cost of tokenizing, with nothing else

Every system reads the same HH-format jsonl, makes the same split and tokenizes the same texts. Each
prints one JSON line: {"tokens": N} (tokens produced), plus what it wants to report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPT2 = ROOT.parent / "shared" / "data" / "tokenizers" / "gpt2" / "tokenizer.json"
SPLIT, SEED, MAX_SEQ, MAX_PROMPT = "6,2,2", 1234, 512, 256
EOT = "<|endoftext|>"


def hh_rows(path: Path):
    """(prompt, chosen, rejected) per usable row, and the side sizes, as dataprep parses them."""
    from dataprep.sources.hh import drop_reason, split_dialogue

    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            raw = json.loads(line)
            c, r = split_dialogue(raw["chosen"]), split_dialogue(raw["rejected"])
            rows.append(None if drop_reason(c, r) else (c[0], c[1], r[1]))
    return rows


def phase_rows(rows):
    """{(phase, side): [row, ...]} with DeepSpeed-Chat's 9,1 carve then 6,2,2 split."""
    from dataprep.split import Split

    train, evals = Split.parse("9,1", parts=2).indices(SEED, len(rows))
    out = {}
    for side, pool in (("train", train), ("eval", evals)):
        for phase, index in zip((1, 2, 3), Split.parse(SPLIT).indices(SEED, len(pool))):
            out[(phase, side)] = [rows[i] for i in pool[index] if rows[i] is not None]
    return out


def ours(src: Path, out: Path, workers: int, *decontaminate: str, dedup: bool = True) -> dict:
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    from dataprep import PrepareOptions, prepare

    result = prepare(PrepareOptions(data=[str(src)], out=out, tokenizer=str(GPT2), split=SPLIT, seed=SEED,
                                    max_seq_len=MAX_SEQ, max_prompt_len=MAX_PROMPT, force=True, progress=False,
                                    dedup=dedup, decontaminate=decontaminate))
    tokens = sum(s["total"] for p in result.manifest["phases"].values() for side in p.values() for s in side["tokens"].values())
    return {"tokens": tokens, "screened": result.manifest["inputs"][0]["screened"]}


def ours_plain(src: Path, out: Path, workers: int) -> dict:
    """ours without the screen stage: the baseline of the screen's cost."""
    return ours(src, out, workers, dedup=False)


class PromptDataset:
    """DeepSpeed-Chat's PromptDataset: the per-phase lists of tokenizer outputs, pickled whole."""

    def __init__(self, prompt_dataset, chosen_dataset, reject_dataset, pad_token_id, train_phase):
        self.prompt_dataset, self.chosen_dataset, self.reject_dataset = prompt_dataset, chosen_dataset, reject_dataset
        self.pad_token_id, self.train_phase = pad_token_id, train_phase

    def __len__(self):
        return len(self.prompt_dataset if self.train_phase == 3 else self.chosen_dataset)

    def __getitem__(self, idx):
        if self.train_phase == 1:
            row = self.chosen_dataset[idx]
            return {"input_ids": row["input_ids"], "attention_mask": row["attention_mask"],
                    "labels": row["input_ids"].masked_fill(row["attention_mask"] == 0, -100)}
        if self.train_phase == 2:
            c, r = self.chosen_dataset[idx], self.reject_dataset[idx]
            return c["input_ids"], c["attention_mask"], r["input_ids"], r["attention_mask"]
        p = self.prompt_dataset[idx]
        return p["input_ids"], p["attention_mask"], self.pad_token_id


def dschat(src: Path, out: Path, workers: int) -> dict:
    """create_dataset_split, row by row: each tokenizer call's BatchEncoding is kept as DeepSpeed-Chat
    keeps it (its fast-tokenizer encodings included, which torch.save pickles with it)."""
    import torch
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(GPT2), eos_token=EOT, pad_token=EOT)
    parts = phase_rows(hh_rows(src))
    out.mkdir(parents=True, exist_ok=True)
    tokens = 0
    for (phase, side), rows in parts.items():
        prompt_dataset, chosen_dataset, reject_dataset = [], [], []
        for prompt, chosen, rejected in rows:
            if phase == 1:
                t = tok(prompt + chosen + EOT, max_length=MAX_SEQ, padding="max_length", truncation=True, return_tensors="pt")
                t["input_ids"], t["attention_mask"] = t["input_ids"].squeeze(0), t["attention_mask"].squeeze(0)
                chosen_dataset.append(t)
                tokens += int(t["attention_mask"].sum())
            elif phase == 2:
                c = tok(prompt + chosen + EOT, max_length=MAX_SEQ, padding="max_length", truncation=True, return_tensors="pt")
                r = tok(prompt + rejected + EOT, max_length=MAX_SEQ, padding="max_length", truncation=True, return_tensors="pt")
                chosen_dataset.append(c)
                reject_dataset.append(r)
                tokens += int(c["attention_mask"].sum() + r["attention_mask"].sum())
            else:
                t = tok(prompt, return_tensors="pt")
                if t["input_ids"].shape[-1] <= MAX_PROMPT:
                    for key in ("input_ids", "attention_mask"):
                        t[key] = t[key].squeeze(0).flip(0)
                    prompt_dataset.append(t)
                    tokens += t["input_ids"].shape[-1]
        dataset = PromptDataset(prompt_dataset, chosen_dataset, reject_dataset, tok.pad_token_id, phase)
        torch.save(dataset, out / f"phase{phase}_{side}.pt")
        del dataset, prompt_dataset, chosen_dataset, reject_dataset
    return {"tokens": tokens}


def dschat_load(src: Path, out: Path, workers: int) -> dict:
    import random

    import torch

    start = time.perf_counter()
    data = torch.load(out / "phase1_train.pt", weights_only=False)
    opened = time.perf_counter() - start
    return {"open_s": opened, "random_rows_per_s": _random_access(lambda i: data[i]["input_ids"], len(data), random)}


def datasets_(src: Path, out: Path, workers: int) -> dict:
    import datasets
    from transformers import PreTrainedTokenizerFast

    datasets.disable_progress_bars()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(GPT2), eos_token=EOT, pad_token=EOT)
    parts = phase_rows(hh_rows(src))
    tokens = 0
    for (phase, side), rows in parts.items():
        table = datasets.Dataset.from_dict({"prompt": [r[0] for r in rows], "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows]})

        def encode(batch, phase=phase):
            if phase == 1:
                ids = tok([p + c for p, c in zip(batch["prompt"], batch["chosen"])], truncation=True, max_length=MAX_SEQ - 1)["input_ids"]
                return {"input_ids": [i + [tok.eos_token_id] for i in ids]}
            if phase == 2:
                c = tok([p + x for p, x in zip(batch["prompt"], batch["chosen"])], truncation=True, max_length=MAX_SEQ - 1)["input_ids"]
                r = tok([p + x for p, x in zip(batch["prompt"], batch["rejected"])], truncation=True, max_length=MAX_SEQ - 1)["input_ids"]
                return {"chosen_input_ids": [i + [tok.eos_token_id] for i in c], "rejected_input_ids": [i + [tok.eos_token_id] for i in r]}
            return {"prompt_input_ids": tok(batch["prompt"])["input_ids"]}

        mapped = table.map(encode, batched=True, num_proc=workers if workers > 1 else None, remove_columns=table.column_names)
        if phase == 3:
            mapped = mapped.filter(lambda b: [len(x) <= MAX_PROMPT for x in b["prompt_input_ids"]], batched=True, num_proc=workers if workers > 1 else None)
        mapped.save_to_disk(str(out / f"phase{phase}_{side}"))
        tokens += sum(sum(len(x) for x in mapped[c]) for c in mapped.column_names)
    return {"tokens": tokens}


def datasets_load(src: Path, out: Path, workers: int) -> dict:
    import random

    import datasets

    start = time.perf_counter()
    data = datasets.load_from_disk(str(out / "phase1_train"))
    opened = time.perf_counter() - start
    return {"open_s": opened, "random_rows_per_s": _random_access(lambda i: data[i]["input_ids"], len(data), random)}


def ours_load(src: Path, out: Path, workers: int) -> dict:
    import random

    from trainer.shard_dataset import ShardDataset

    start = time.perf_counter()
    ShardDataset(out, 1, "train")  # what the trainer does: the structural checks and every shard's sha256
    verified = time.perf_counter() - start
    start = time.perf_counter()
    data = ShardDataset(out, 1, "train", verify=False)  # the structural checks alone
    opened = time.perf_counter() - start
    return {"open_s": opened, "verified_open_s": verified,
            "random_rows_per_s": _random_access(lambda i: data[i]["input_ids"], len(data), random, data.__getitems__)}


def ceiling(src: Path, out: Path, workers: int) -> dict:
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(GPT2))
    tokens = 0
    for (phase, side), rows in phase_rows(hh_rows(src)).items():
        if phase == 1:
            texts = [p + c for p, c, _ in rows]
        elif phase == 2:
            texts = [p + c for p, c, _ in rows] + [p + r for p, _, r in rows]
        else:
            texts = [p for p, _, _ in rows]
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts))
    return {"tokens": tokens}


def _random_access(get, n: int, random, get_batch=None, batch: int = 64) -> float:
    """Random rows per second: one by one, or in batches of `batch` where the dataset has a batch
    fetch (torch's DataLoader calls __getitems__ with the batch's indices when it exists)."""
    rng = random.Random(0)
    index = [rng.randrange(n) for _ in range(200_000)]
    start = time.perf_counter()
    if get_batch is None:
        for i in index:
            get(i)
    else:
        for k in range(0, len(index), batch):
            get_batch(index[k : k + batch])
    return len(index) / (time.perf_counter() - start)


SYSTEMS = {"ours": ours, "ours-plain": ours_plain, "ours-load": ours_load, "dschat": dschat, "dschat-load": dschat_load,
           "datasets": datasets_, "datasets-load": datasets_load, "ceiling": ceiling}

if __name__ == "__main__":
    name, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    print(json.dumps(SYSTEMS[name](src, out, workers, *sys.argv[5:])))
