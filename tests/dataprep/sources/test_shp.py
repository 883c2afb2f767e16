"""stanfordnlp/SHP: label picks the preferred comment, group = post_id, the card's optional filters."""

from __future__ import annotations

from tests.dataprep.sources.native import read, reasons, texts, write_jsonl


def _pair(post, a, b, label, ratio):
    return {"post_id": post, "domain": "askculinary_train", "upvote_ratio": 0.98, "history": f"Question {post}?",
            "c_root_id_A": "a", "c_root_id_B": "b", "created_at_utc_A": 1, "created_at_utc_B": 2, "score_A": 10,
            "score_B": 5, "human_ref_A": a, "human_ref_B": b, "labels": label, "seconds_difference": 1.0, "score_ratio": ratio}


def _write(root):
    write_jsonl(root / "askculinary" / "train.json", [
        _pair("p1", "A wins", "B loses", 1, 3.0),
        _pair("p1", "A loses", "B wins", 0, 1.5),
        _pair("p1", "A", "B", 1, 2.5),
        _pair("p2", "same", "same", 1, 4.0),
        _pair("p2", "x", "y", 1, 2.0),
    ])
    write_jsonl(root / "askculinary" / "validation.json", [_pair("p3", "v", "w", 0, 2.0)])
    write_jsonl(root / "askculinary" / "test.json", [_pair("p4", "t", "u", 0, 2.0)])


def test_default_reads_every_pair(tmp_path):
    _write(tmp_path)
    sides = read("stanfordnlp/SHP", tmp_path)
    train = sides["train"]
    assert texts(train[0]) == (" Human: Question p1? Assistant:", " A wins", " B loses")
    assert texts(train[1]) == (" Human: Question p1? Assistant:", " B wins", " A loses")
    assert [r["group"] for r in train] == ["p1", "p1", "p1", "p2", "p2"]
    assert reasons(train) == {None: 4, "identical_pair": 1}
    assert len(sides["eval"]) == 1 and texts(sides["eval"][0])[1] == " w"  # validation; test is not read


def test_card_filters(tmp_path):
    _write(tmp_path)
    train = read("shp", tmp_path, shp_min_score_ratio=2.0, shp_max_pairs_per_post=1)["train"]
    # p1: 3.0 kept, 1.5 below the ratio, 2.5 over the cap; p2: identical (not counted), 2.0 kept.
    assert [r["drop_reason"] for r in train] == [None, "shp_score_ratio", "shp_post_cap", "identical_pair", None]
