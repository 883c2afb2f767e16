"""The registry: every DeepSpeed-Chat dataset resolves by name, alias and hub id; local copies by
--data-dir or by a path ending in the hub id; offline without a copy is one line saying what to fetch."""

from __future__ import annotations

import pytest

from dataprep.errors import DataprepError
from dataprep.sources import ADAPTER_VERSIONS, ADAPTERS, SPECS, listing, registered, resolve
from tests.dataprep.sources.native import write_parquet

DEEPSPEED_CHAT_KEYS = [
    "Dahoas/rm-static", "Dahoas/full-hh-rlhf", "Dahoas/synthetic-instruct-gptj-pairwise", "yitingxie/rlhf-reward-datasets",
    "openai/webgpt_comparisons", "stanfordnlp/SHP", "pvduy/sharegpt_alpaca_oa_vicuna_format", "local/jsonfile",
    "wangrui6/Zhihu-KOL", "Cohere/miracl-zh-queries-22-12", "Hello-SimpleAI/HC3-Chinese", "mkqa-Chinese", "mkqa-Japanese",
    "Cohere/miracl-ja-queries-22-12", "lmqg/qg_jaquad", "lmqg/qag_jaquad",
]


def test_every_deepspeed_chat_key_and_our_additions_are_registered():
    names = registered()
    for key in DEEPSPEED_CHAT_KEYS + ["HuggingFaceH4/ultrafeedback_binarized", "Anthropic/hh-rlhf", "hh"]:
        assert key in names, key
    for spec in SPECS:
        assert spec.name in names and spec.adapter.name in ADAPTER_VERSIONS  # versions key the cache
    assert set(ADAPTERS) <= set(ADAPTER_VERSIONS)
    assert [entry["name"] for entry in listing()] == [spec.name for spec in SPECS] and "hh" in names


def test_offline_without_a_copy_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataprepError) as err:
        resolve("Hello-SimpleAI/HC3-Chinese")
    message = str(err.value)
    assert "\n" not in message and "refs%2Fconvert%2Fparquet/all" in message and "--data-dir DIR" in message


def test_a_path_ending_in_the_hub_id_is_that_dataset(tmp_path):
    root = tmp_path / "Dahoas" / "rm-static"
    write_parquet(root / "data" / "train-00000-of-00001.parquet", [{"prompt": "p", "response": "", "chosen": " a", "rejected": " b"}])
    dataset = resolve(str(root))
    assert dataset.adapter == "dahoas" and [f.source for f in dataset.files] == ["rm-static/data/train-00000-of-00001"]


def test_one_data_dir_for_several_datasets(tmp_path):
    write_parquet(tmp_path / "Dahoas" / "rm-static" / "data" / "train.parquet", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    write_parquet(tmp_path / "zhihu-kol" / "train.parquet", [{"INSTRUCTION": "i", "RESPONSE": "r"}])
    assert resolve("rm-static", data_dir=tmp_path).files[0].path.parent.name == "data"
    assert resolve("wangrui6/Zhihu-KOL", data_dir=tmp_path).files[0].path.parent.name == "zhihu-kol"


def test_a_local_copy_without_split_files_says_what_is_expected(tmp_path):
    write_parquet(tmp_path / "whatever.parquet", [{"prompt": "p"}])
    with pytest.raises(DataprepError, match=r"rm-static: no train/test .* data files under .*huggingface.co/datasets/Dahoas/rm-static"):
        resolve("Dahoas/rm-static", data_dir=tmp_path)
