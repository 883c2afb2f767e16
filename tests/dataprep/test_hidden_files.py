"""Hidden files and folders (a name starting with a dot, under the directory given) are never read as
data: not by --data DIR, a registered dataset's --data-dir, --unsup DIR or --decontaminate DIR. A
notebook's .ipynb_checkpoints/train-checkpoint.jsonl would otherwise sort first and become the first
copy of every row it repeats."""

from __future__ import annotations

import json
from pathlib import Path

from dataprep import PrepareOptions, prepare
from dataprep.inputs import resolve_inputs
from tests.conftest import SAMPLE_TOKENIZER

HIDDEN = (".ipynb_checkpoints/train-checkpoint.jsonl", ".train.jsonl", ".git/objects/x/train.jsonl", "sub/.cache/train.jsonl")


def write(root: Path, rel: str, rows: list[dict]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def folder(root: Path, rows: list[dict]) -> Path:
    """`root` holding train.jsonl and sub/test.jsonl, and stale copies of train.jsonl in hidden places."""
    write(root, "train.jsonl", rows)
    write(root, "sub/test.jsonl", rows[:5])
    for rel in HIDDEN:
        write(root, rel, rows[:3])
    return root


def pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": f"Not {i}."} for i in range(n)]


def test_every_route_skips_hidden_paths(tmp_path):
    data = folder(tmp_path / "data", pairs(20))
    registered = folder(tmp_path / "jsonfile", pairs(20))
    unsup = folder(tmp_path / "unsup", [{"text": f"Some plain text number {i}, long enough to read."} for i in range(20)])
    bench = folder(tmp_path / "bench", [{"text": f"a benchmark question number {i} with a few more words in it"} for i in range(20)])
    inputs = resolve_inputs(PrepareOptions(data=[str(data), "jsonfile"], data_dir=registered, unsup=[str(unsup)], decontaminate=[str(bench)],
                                           out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER), progress=False))
    read = {d.name: sorted(f.path.relative_to(root).as_posix() for f in d.dataset.files)
            for d, root in zip(inputs.datasets + inputs.unsup + inputs.benchmarks, (data, registered, unsup, bench))}
    assert read == {"data": ["sub/test.jsonl", "train.jsonl"], "jsonfile": ["sub/test.jsonl", "train.jsonl"],
                    "unsup": ["sub/test.jsonl", "train.jsonl"], "bench": ["sub/test.jsonl", "train.jsonl"]}


def test_a_stale_checkpoint_copy_is_not_the_first_copy(tmp_path):
    rows = pairs(30)
    data = folder(tmp_path / "data", rows)
    (data / "sub" / "test.jsonl").unlink()
    result = prepare(PrepareOptions(data=[str(data)], out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER), split="1,1,1", progress=False))
    record = result.manifest["inputs"][0]
    assert [Path(f["path"]).name for f in record["files"]] == ["train.jsonl"]
    dropped = {reason for sides in result.manifest["phases"].values() for info in sides.values() for reason in info["dropped"]}
    assert "duplicate" not in dropped and sum(record["rows"].values()) == len(rows)
