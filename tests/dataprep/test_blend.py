"""Blending: DeepSpeed-Chat's unweighted blend, exact weighted quotas recorded in the manifest,
byte-identical reruns, and --sft-only-data in phase 1 in DeepSpeed-Chat's order."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep import blend, cli
from dataprep.errors import DataprepError
from dataprep import PrepareOptions, prepare
from dataprep.split import Split, shuffle_index
from dataprep.verify import verify
from tests.conftest import SAMPLE_TOKENIZER

SPLIT = "4,3,3"


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _dataset(root: Path, name: str, train: int, test: int, rejected: bool = True) -> Path:
    """A local jsonfile dataset: NAME/train.jsonl and NAME/test.jsonl, distinct prompts."""
    def rows(n: int, kind: str) -> list[dict]:
        out = [{"prompt": f"Human: {name} {kind} question {i}? Assistant:", "chosen": f"yes {i}"} for i in range(n)]
        for i, r in enumerate(out):
            if rejected:
                r["rejected"] = f"no {i}"
        return out
    _write(root / name / "train.jsonl", rows(train, "train"))
    if test:
        _write(root / name / "test.jsonl", rows(test, "test"))
    return root / name


def _opts(out: Path, data: list[str], split: str = SPLIT, **kw) -> PrepareOptions:
    return PrepareOptions(data=data, out=out, tokenizer=str(SAMPLE_TOKENIZER), split=split, progress=False, **kw)


def _phase(out: Path, phase: int, side: str) -> pa.Table:
    files = sorted((out / f"phase{phase}").glob(f"{side}-*.arrow"))
    return pa.concat_tables(pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in files)


def _rows(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table.column("source").to_pylist(), table.column("row_id").to_pylist()))


def _largest_remainder(weights: list[float], total: int) -> list[int]:
    """Independent of blend.quotas: floor of each exact share, then +1 by largest remainder, earlier first."""
    exact = [Fraction(w).limit_denominator(1000) * total / sum(Fraction(x).limit_denominator(1000) for x in weights) for w in weights]
    base = [e.numerator // e.denominator for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (base[i] - exact[i], i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("three")
    _dataset(root, "a", 120, 30)
    _dataset(root, "b", 50, 20)
    _dataset(root, "c", 20, 10)
    return root


@pytest.fixture(scope="module")
def weighted(three, tmp_path_factory):
    out = tmp_path_factory.mktemp("weighted") / "out"
    data = [f"{three / 'a'}:0.5", f"{three / 'b'}:0.3", f"{three / 'c'}:0.2"]
    return out, data, prepare(_opts(out, data)).manifest


def test_weights_give_exact_quotas(weighted):
    out, _, manifest = weighted
    for phase in ("1", "2", "3"):
        for side in ("train", "eval"):
            info = manifest["phases"][phase][side]
            available = [info["by_dataset"][n]["blend"]["available"] for n in "abc"]
            expected = _largest_remainder([0.5, 0.3, 0.2], sum(available))
            assert [info["by_dataset"][n]["blend"]["quota"] for n in "abc"] == expected
            shards = _phase(out, int(phase), side).column("source").to_pylist()
            assert [sum(s.startswith(f"{n}/") for s in shards) for n in "abc"] == expected
            assert len(shards) == sum(available) == info["kept"]


def test_manifest_records_weights_taken_repeated_left_out(weighted):
    out, _, manifest = weighted
    over_quota = 0
    for sides in manifest["phases"].values():
        for info in sides.values():
            for name, d in info["by_dataset"].items():
                b = d["blend"]
                assert b["weight"] == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2}[name])
                assert b["taken"] + b["left_out"] == b["available"] and b["taken"] + b["repeated"] == b["quota"]
                assert d["dropped"].get("over_quota", 0) == b["left_out"] and d["repeated"] == b["repeated"]
                assert d["kept"] + sum(d["dropped"].values()) == d["rows_in"] + d["repeated"]
                over_quota += b["left_out"]
            assert info["kept"] + sum(info["dropped"].values()) == info["rows_in"] + info["repeated"]
    # a (63% of the rows, weight 0.5) gives rows up, c (10%, weight 0.2) is repeated
    assert manifest["phases"]["1"]["train"]["by_dataset"]["a"]["blend"]["left_out"] > 0
    assert manifest["phases"]["1"]["train"]["by_dataset"]["c"]["blend"]["repeated"] > 0
    dropped = pa.concat_tables(pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in sorted((out / "dropped").glob("*.arrow")))
    assert dropped.column("reason").to_pylist().count("over_quota") == over_quota > 0
    assert manifest["options"]["data_weights"] == [0.5, 0.3, 0.2]
    assert verify(out)[0] == []


def test_a_rerun_gives_the_same_shards(weighted, tmp_path):
    out, data, manifest = weighted
    again = prepare(_opts(tmp_path / "again", data)).manifest
    for phase, sides in manifest["phases"].items():
        for side, info in sides.items():
            assert [s["sha256"] for s in info["shards"]] == [s["sha256"] for s in again["phases"][phase][side]["shards"]]
            for record in info["shards"]:
                assert (out / record["file"]).read_bytes() == (tmp_path / "again" / record["file"]).read_bytes()


def test_other_weights_change_the_output(weighted, three, tmp_path):
    _, _, manifest = weighted
    data = [f"{three / 'a'}:0.2", f"{three / 'b'}:0.3", f"{three / 'c'}:0.5"]
    other = prepare(_opts(tmp_path / "other", data)).manifest
    assert other["cache_key"] != manifest["cache_key"]
    assert other["phases"]["1"]["train"]["by_dataset"]["c"]["blend"]["quota"] > manifest["phases"]["1"]["train"]["by_dataset"]["c"]["blend"]["quota"]


def test_unweighted_three_datasets_blend_as_deepspeed_chat(three, tmp_path):
    alone = []
    for name in "abc":
        prepare(_opts(tmp_path / name, [str(three / name)]))
        alone.append(_phase(tmp_path / name, 2, "eval"))
    prepare(_opts(tmp_path / "blend", [str(three / n) for n in "abc"]))
    concat = pa.concat_tables(alone)
    assert _rows(_phase(tmp_path / "blend", 2, "eval")) == _rows(concat.take(shuffle_index(1234, concat.num_rows)))


def test_weights_equal_to_the_shares_give_the_unweighted_blend(tmp_path):
    # every part of a is exactly twice b's (2,4,4 cuts 100/50 and 50/25 without rounding), so a:2 b:1 asks
    # for each dataset's own rows: the samples keep every row in order, hence DeepSpeed-Chat's blend
    _dataset(tmp_path, "a", 100, 50)
    _dataset(tmp_path, "b", 50, 25)
    plain = prepare(_opts(tmp_path / "plain", [str(tmp_path / "a"), str(tmp_path / "b")], split="2,4,4")).manifest
    weighted = prepare(_opts(tmp_path / "weighted", [f"{tmp_path / 'a'}:2", f"{tmp_path / 'b'}:1"], split="2,4,4")).manifest
    for phase, sides in plain["phases"].items():
        for side, info in sides.items():
            assert [s["sha256"] for s in info["shards"]] == [s["sha256"] for s in weighted["phases"][phase][side]["shards"]]


def test_sft_only_data_feeds_phase_1_in_deepspeed_chat_order(three, tmp_path):
    sft = _dataset(tmp_path, "s", 40, 12, rejected=False)  # no rejected column at all
    data = [str(three / "a"), str(three / "b")]
    manifest = prepare(_opts(tmp_path / "out", data, sft_only_data=[str(sft)])).manifest
    assert [(d["name"], d["role"]) for d in manifest["inputs"]] == [("a", "data"), ("b", "data"), ("s", "sft_only")]
    prepare(_opts(tmp_path / "ab", data))
    for side, file, size in (("train", "s/train", 40), ("eval", "s/test", 12)):
        blended = _rows(_phase(tmp_path / "ab", 1, side))  # DeepSpeed-Chat's blend of a and b
        (everything,) = [ix for ix in Split.parse("10,0,0").indices(1234, size) if len(ix)]  # 10,0,0: the whole permutation
        concat = blended + [(file, int(i)) for i in everything]
        expected = [concat[i] for i in shuffle_index(1234, len(concat))]  # appended, then reshuffled with the seed
        assert _rows(_phase(tmp_path / "out", 1, side)) == expected
        for phase in ("2", "3"):
            assert "s" not in manifest["phases"][phase][side]["by_dataset"]
            assert not any(s.startswith("s/") for s in _phase(tmp_path / "out", int(phase), side).column("source").to_pylist())
    assert manifest["inputs"][2]["split"] == {"train": [40, 0, 0], "eval": [12, 0, 0]}


def test_sft_only_data_after_a_single_dataset(three, tmp_path):
    sft = _dataset(tmp_path, "s", 30, 0, rejected=False)  # train only: carved 9,1 as DeepSpeed-Chat does
    manifest = prepare(_opts(tmp_path / "out", [str(three / "c")], sft_only_data=[str(sft)])).manifest
    prepare(_opts(tmp_path / "c", [str(three / "c")]))
    carved_train, _ = Split.parse("9,1", parts=2).indices(1234, 30)
    (part,) = [ix for ix in Split.parse("10,0,0").indices(1234, len(carved_train)) if len(ix)]
    concat = _rows(_phase(tmp_path / "c", 1, "train")) + [("s/train", int(carved_train[i])) for i in part]
    assert _rows(_phase(tmp_path / "out", 1, "train")) == [concat[i] for i in shuffle_index(1234, len(concat))]
    assert manifest["inputs"][1]["carve"]["split"] == "9,1"


@pytest.mark.parametrize("specs, sft, message", [
    (["{a}:0.5", "{b}"], [], "no weight, but other datasets have one"),
    (["{a}:0", "{b}:1"], [], "must be greater than 0"),
    (["{a}:-1", "{b}:1"], [], "must be greater than 0"),
    (["{a}"], ["{b}:0.5"], "weights apply to --data only"),
])
def test_bad_weights_are_one_clear_error(three, tmp_path, specs, sft, message):
    fill = lambda s: s.format(a=three / "a", b=three / "b")
    with pytest.raises(DataprepError, match=message):
        prepare(_opts(tmp_path / "out", [fill(s) for s in specs], sft_only_data=[fill(s) for s in sft]))


def test_sft_only_data_without_phase_1_is_an_error(three, tmp_path):
    with pytest.raises(DataprepError, match="feeds phase 1 only"):
        prepare(_opts(tmp_path / "out", [str(three / "a")], sft_only_data=[str(three / "b")], split="0,5,5"))


def test_names_with_colons_are_not_weights():
    assert blend.split_weight("org/data:main") == ("org/data:main", None)
    assert blend.split_weight("dir/a:0.25") == ("dir/a", Fraction(1, 4))
    assert blend.split_weight("C:/data/x.jsonl") == ("C:/data/x.jsonl", None)
    assert blend.quotas([Fraction(1)] * 3, 10) == [4, 3, 3]  # ties go to the earlier dataset


def test_cli_prints_quotas_and_overlap(weighted, capsys):
    out, data, _ = weighted
    assert cli.main(["prepare", "--data", *data, "--split", SPLIT, "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "quota" in printed and "left out" in printed and "prompts shared (split by row)" in printed


def test_cli_bad_weight_is_one_line(three, tmp_path, capsys):
    code = cli.main(["prepare", "--data", f"{three / 'a'}:0.5", str(three / "b"), "--tokenizer", str(SAMPLE_TOKENIZER), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no weight" in err and "Traceback" not in err
