"""Registered datasets through the whole pipeline: `dataprep datasets`, `prepare --data-dir` on native
fixtures (the SHP filters in the manifest, SFT-only data in phases 1 and 3), and --template chat."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.errors import DataprepError
from dataprep import PrepareOptions, prepare
from tests.conftest import SAMPLE_TOKENIZER
from tests.dataprep.sources.native import write_jsonl, write_parquet
from tests.dataprep.sources.test_shp import _pair


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True, text=True)


def _table(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def test_datasets_command_lists_every_registered_name():
    proc = run("datasets", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["shp"]["hub_id"] == "stanfordnlp/SHP" and entries["shp"]["phases"] == [1, 2, 3]
    assert entries["zhihu-kol"]["phases"] == [1, 3] and "INSTRUCTION" in entries["zhihu-kol"]["native_columns"]
    assert entries["mkqa-zh"]["aliases"] == ["mkqa-Chinese"] and len(entries) == 19
    text = run("datasets").stdout
    assert "Cohere/miracl-ja-queries-22-12" in text and "phases: 1,3 (SFT-only)" in text


def test_shp_from_a_local_copy_with_the_card_filters(tmp_path):
    data = tmp_path / "shp"
    train = [_pair(f"p{i // 3}", f"A{i}", f"B{i}", i % 2, 1.0 + i % 3) for i in range(30)]
    write_jsonl(data / "askculinary" / "train.json", train)
    write_jsonl(data / "askculinary" / "validation.json", [_pair(f"v{i}", f"a{i}", f"b{i}", 1, 3.0) for i in range(10)])
    out = tmp_path / "out"
    proc = run("prepare", "--data", "stanfordnlp/SHP", "--data-dir", str(data), "--tokenizer", str(SAMPLE_TOKENIZER),
               "--shp-min-score-ratio", "2", "--shp-max-pairs-per-post", "1", "--split", "1,1,1", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["options"]["shp_min_score_ratio"] == 2.0 and manifest["options"]["shp_max_pairs_per_post"] == 1
    (inputs,) = manifest["inputs"]
    (train_file,) = [f for f in inputs["files"] if f["side"] == "train"]
    # ratios cycle 1, 2, 3 over each post's 3 pairs: the 1.0 pair fails the ratio, the 3.0 pair the cap.
    assert train_file["rows"] == 30 and train_file["dropped"] == {"shp_post_cap": 10, "shp_score_ratio": 10}
    normalized = _table(out / "normalized" / "shp.arrow")
    assert set(normalized.column("group").to_pylist()) <= {f"p{i}" for i in range(10)} | {f"v{i}" for i in range(10)}
    assert normalized.column("prompt")[0].as_py().startswith(" Human: Question p")


def test_sft_only_data_feeds_phases_1_and_3(tmp_path):
    data = tmp_path / "zhihu"
    write_parquet(data / "data" / "train-00000-of-00001.parquet", [{"INSTRUCTION": f"问{i}", "RESPONSE": f"答{i}"} for i in range(40)])
    result = prepare(PrepareOptions(data=["wangrui6/Zhihu-KOL"], data_dir=data, out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER),
                                    split="1,0,1", progress=False))
    phases = result.manifest["phases"]
    assert set(phases) == {"1", "3"}
    assert phases["1"]["train"]["kept"] + phases["1"]["eval"]["kept"] + phases["3"]["train"]["kept"] + phases["3"]["eval"]["kept"] == 40


def test_sft_only_data_in_phase_2_alone_says_why(tmp_path):
    data = tmp_path / "zhihu"
    write_parquet(data / "train.parquet", [{"INSTRUCTION": f"问{i}", "RESPONSE": f"答{i}"} for i in range(40)])
    with pytest.raises(DataprepError, match="no_rejected"):
        prepare(PrepareOptions(data=["zhihu-kol"], data_dir=data, out=tmp_path / "out", tokenizer=str(SAMPLE_TOKENIZER),
                               split="0,1,0", progress=False))


def _ultrafeedback(root: Path) -> None:
    def row(i):
        user = {"role": "user", "content": f"Question {i}?"}
        return {"prompt": user["content"], "chosen": [user, {"role": "assistant", "content": f"Good {i}."}],
                "rejected": [user, {"role": "assistant", "content": f"Bad {i}."}], "score_chosen": 9.0, "score_rejected": 1.0}
    write_parquet(root / "data" / "train_prefs-00000-of-00001.parquet", [row(i) for i in range(30)])
    write_parquet(root / "data" / "test_prefs-00000-of-00001.parquet", [row(i) for i in range(30, 45)])


def test_template_chat_needs_a_template(tmp_path):
    _ultrafeedback(tmp_path / "uf")
    proc = run("prepare", "--data", "ultrafeedback", "--data-dir", str(tmp_path / "uf"), "--tokenizer", str(SAMPLE_TOKENIZER),
               "--template", "chat", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--template chat: the tokenizer" in proc.stderr and "no chat template" in proc.stderr


def test_template_chat_renders_with_the_tokenizers_template(tmp_path, hf_dir):
    tok = tmp_path / "tok"
    shutil.copytree(hf_dir, tok)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    _ultrafeedback(tmp_path / "uf")
    opts = PrepareOptions(data=["HuggingFaceH4/ultrafeedback_binarized"], data_dir=tmp_path / "uf", out=tmp_path / "out",
                          tokenizer=str(tok), template="chat", split="1,1,1", progress=False)
    result = prepare(opts)
    assert len(result.manifest["options"]["chat_template_sha256"]) == 64
    rows = _table(tmp_path / "out" / "normalized" / "ultrafeedback.arrow").to_pylist()
    first = next(r for r in rows if r["row_id"] == 0 and r["source"].endswith("train_prefs-00000-of-00001"))
    # The tokenizer adds <s> itself, so the template's leading bos_token is cut: one BOS in the ids.
    assert (first["prompt"], first["chosen"], first["rejected"]) == ("<user>Question 0?<assistant>", "Good 0.", "Bad 0.")
    config["chat_template"] = config["chat_template"].replace("{{ bos_token }}", "{{ bos_token }}#")
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    assert not prepare(opts).reused  # another template, another cache key
