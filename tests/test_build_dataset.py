"""Dataset builder: question correctness, answer format, splits, caption files, clips end to end."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pytest

from core.annotations import load_shuttleset_set, write_reference_csv
from core.prompts import format_answer, format_cot_answer, parse_answer
from core.vocab import STROKES, ZONE_PHRASES
from tests.conftest import index_frame, read_index
from train import build_dataset as bd
from train.qa import (KINDS, TEMPLATES, chunk_questions, chunk_rng, draw_question, matching_indices,
                      oversample_impossible, rally_chunks)

DATA = Path(__file__).parent / "data" / "shuttleset"
MATCH = "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"
PHRASE_TO_ZONE = {v: k for k, v in ZONE_PHRASES.items()}


def fixture_strokes():
    return [s for n in (1, 2, 3) for s in load_shuttleset_set(DATA / MATCH / f"set{n}.csv").strokes
            if s.caption is not None]


def read_question(question: str, kind: str) -> dict:
    """The fields a question asks about, read back from its text with the templates as patterns."""
    for t in TEMPLATES[kind]:
        strokes = "|".join(map(re.escape, STROKES))
        areas = "|".join(map(re.escape, ZONE_PHRASES.values()))
        pattern = re.escape(t).replace(r"\{player\}", r"(?P<player>upper|bottom) player")
        pattern = pattern.replace(r"\{stroke\}", rf"(?P<stroke>{strokes})").replace(r"\{hit_area\}", rf"(?P<area>{areas})")
        m = re.fullmatch(pattern, question)
        if m:
            g = m.groupdict()
            out = {}
            if "player" in g:
                out["side"] = g["player"]
            if "stroke" in g:
                out["stroke"] = g["stroke"]
            if "area" in g:
                out["zone"] = PHRASE_TO_ZONE[g["area"]]
            return out
    raise AssertionError(f"{question!r} fits no {kind} template")


# ---------------------------------------------------------------- questions


@pytest.mark.parametrize("cot", [False, True])
def test_every_answer_lists_exactly_the_matching_strokes(cot):
    strokes = fixture_strokes()
    chunks = rally_chunks(strokes, 10 if cot else 5)
    assert chunks
    for ch in chunks:
        assert [s.ball_round for s in ch.strokes] == sorted(s.ball_round for s in ch.strokes)
        items = chunk_questions(ch, chunk_rng(0, ch.chunk_id), cot=cot)
        assert len(items) == 14
        negatives = [it for it in items if it["is_impossible"]]
        # one negative per kind; only "area" can run out of absent events (all 7 zones in the chunk)
        all_zones = {ZONE_PHRASES[s.zone] for s in ch.strokes} == set(ZONE_PHRASES.values())
        assert sorted(it["kind"] for it in negatives) == sorted(k for k in KINDS if not (k == "area" and all_zones))
        assert len({it["question_id"] for it in items}) == 14
        for it in items:
            fields = read_question(it["question"], it["kind"])
            # expected from the captions' own words, not from the builder's matching code
            expected = [i for i, s in enumerate(ch.strokes)
                        if ("side" not in fields or s.caption.startswith(fields["side"] + " "))
                        and ("stroke" not in fields or f" hits a {fields['stroke']} " in s.caption)
                        and ("zone" not in fields or s.caption.endswith(" " + ZONE_PHRASES[fields["zone"]]))]
            assert parse_answer(it["answer"]) == (expected or None), it
            assert it["indices"] == expected and it["is_impossible"] == (not expected)
            assert it["image"] == [f"clips/{s.stroke_id}.mp4" for s in ch.strokes]
            if "stroke" in fields:
                assert fields["stroke"] in STROKES
            if cot:
                for i, s in enumerate(ch.strokes):
                    assert f"stroke {i}: {s.caption}\n" in it["answer"]


def test_positives_cover_distinct_events_before_repeating():
    ch = rally_chunks(fixture_strokes(), 5)[0]
    items = chunk_questions(ch, chunk_rng(1, ch.chunk_id))
    pos = [(it["kind"], tuple(sorted(it["event"].items()))) for it in items if not it["is_impossible"]]
    distinct = {(k, tuple(sorted({f: getattr(s, f) for f in f_}.items())))
                for s in ch.strokes for k, f_ in (("player_stroke_area", ("side", "stroke", "zone")),
                                                  ("player_stroke", ("side", "stroke")),
                                                  ("stroke", ("stroke",)), ("area", ("zone",)))}
    assert len(pos) == 10
    assert len(set(pos)) == min(10, len(distinct))


def test_chunk_ids_and_sizes():
    chunks = rally_chunks(fixture_strokes(), 5)
    for ch in chunks:
        m = re.fullmatch(rf"{MATCH}_(\d)_(\d+)_chunk(\d+)", ch.chunk_id)
        assert m and 1 <= len(ch.strokes) <= 5
        assert {(s.set, s.rally) for s in ch.strokes} == {(int(m.group(1)), int(m.group(2)))}


def test_drawn_questions_follow_the_negative_share():
    import random

    chunk = rally_chunks(fixture_strokes(), 5)[0]
    rng = random.Random(0)
    for negatives in (0.0, 1.0):
        drawn = [draw_question(chunk, rng, negatives) for _ in range(40)]
        assert all(q["is_impossible"] == (negatives == 1.0) for q in drawn)
        for q in drawn:  # the answer is the chunk's own matching strokes
            assert q["indices"] == matching_indices(chunk.strokes, q["event"])
    mixed = [draw_question(chunk, rng, 0.5)["is_impossible"] for _ in range(400)]
    assert 0.4 < sum(mixed) / len(mixed) < 0.6


def test_oversampled_impossible_questions_reach_the_share_and_keep_every_question():
    items = [{"question_id": f"q{i}", "is_impossible": i % 7 == 0} for i in range(70)]  # 10 of 70
    out = oversample_impossible(items, 0.4, seed=1)
    assert out[:70] == items  # nothing dropped, the data's order first
    share = sum(it["is_impossible"] for it in out) / len(out)
    assert abs(share - 0.4) < 0.01 and all(it["is_impossible"] for it in out[70:])
    assert out == oversample_impossible(items, 0.4, seed=1)
    assert oversample_impossible(items, 0.1) is items  # already at the share (10 of 70 > 10 %)
    with pytest.raises(ValueError):
        oversample_impossible(items, 1.0)


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("indices, text", [
    ([2], "The event happens at stroke 2"),
    ([0, 3], "The event happens at strokes 0,3"),
    ([1, 4, 9], "The event happens at strokes 1,4,9"),
    (None, "The event does not occur"),
])
def test_answer_format_and_parse_round_trip(indices, text):
    assert format_answer(indices) == text
    assert parse_answer(text) == indices
    cot = format_cot_answer(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], indices)
    assert cot.endswith(f"<answer>{text}</answer>") and cot.startswith("<thinking>\nstroke 0: a\n")
    assert parse_answer(cot) == indices


def test_parse_prefers_the_answer_tag_and_tolerates_model_noise():
    # the thinking part names other strokes; only <answer> counts
    assert parse_answer("<thinking>stroke 1: x\ntherefore the answer is strokes 1,2</thinking>"
                        "<answer>The event happens at strokes 4, 0</answer>") == [4, 0]
    assert parse_answer("<answer>The event happens at stroke 3") == [3]  # cut-off generation
    assert parse_answer("the event happens at strokes 2,2,5.") == [2, 5]
    assert parse_answer("<answer>The event does not occur</answer>") is None
    assert parse_answer("a smash") == []  # unparseable: neither indices nor "does not occur"


def test_llm_prompt_is_the_reference_text():
    from core.prompts import qa_prompt

    p = qa_prompt(5, "When is a smash hits?")
    assert p.startswith("<Video> This video has 5 strokes. You must answer based only on the strokes you see\u2014do")
    assert p.endswith("Question: When is a smash hits? Answer:")
    assert "\u201cThe event does not occur\u201d" in p


# ---------------------------------------------------------------- splits


def test_split_matches_deterministic_disjoint_and_proportional():
    matches = [f"match_{i:02d}" for i in range(20)]
    fr = bd.parse_fractions("train=0.8,val=0.1,test=0.1")
    a, b = bd.split_matches(matches, fr, 7), bd.split_matches(list(reversed(matches)), fr, 7)
    assert a == b  # depends on the seed, not on the input order
    assert sorted(a) == matches
    counts = {k: sum(v == k for v in a.values()) for k in bd.SPLITS}
    assert counts == {"train": 16, "val": 2, "test": 2}
    assert any(bd.split_matches(matches, fr, s) != a for s in range(8, 12))
    few = bd.split_matches(["m1", "m2", "m3"], fr, 0)  # tiny: every split still gets one match
    assert sorted(few.values()) == ["test", "train", "val"]


def multi_match_csv(tmp_path: Path, n_matches: int = 6) -> Path:
    """A reference CSV holding the fixture's strokes under several match names."""
    strokes = fixture_strokes()
    out = []
    for k in range(n_matches):
        for s in strokes:
            t = type(s)(**{**s.__dict__, "match": f"game{k}"})
            out.append(t)
    return write_reference_csv(out, tmp_path / "ref.csv")


def run(argv) -> dict:
    assert bd.main([*map(str, argv), "--no-progress"]) == 0
    out = Path(argv[argv.index("--out") + 1])
    return json.loads((out / "manifest.json").read_text())


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_build_splits_by_match_and_is_deterministic(tmp_path):
    csv_path = multi_match_csv(tmp_path)
    args = ["--annotations", csv_path, "--splits", "train=0.6,val=0.2,test=0.2", "--seed", "3"]
    m1 = run([*args, "--out", tmp_path / "a"])
    run([*args, "--out", tmp_path / "b"])
    for f in ("train.json", "val.json", "test.json", "qa_train.json", "qa_val.json", "qa_test.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    games = {}
    for split in bd.SPLITS:
        caps = load(tmp_path / "a" / f"{split}.json")
        qa = load(tmp_path / "a" / f"qa_{split}.json")
        games[split] = {c["image_id"].split("_")[0] for c in caps}
        assert {q["chunk_id"].split("_")[0] for q in qa} == games[split]
        assert all(q["split"] == split for q in qa)
        assert sorted(games[split]) == m1["matches"][split]
    assert not (games["train"] & games["val"] or games["train"] & games["test"] or games["val"] & games["test"])
    assert (len(games["train"]), len(games["val"]), len(games["test"])) == (4, 1, 1)


def test_named_matches_and_val_to_train(tmp_path):
    csv_path = multi_match_csv(tmp_path, 4)
    m = run(["--annotations", csv_path, "--out", tmp_path / "o", "--val-matches", "game1", "game2",
             "--test-matches", "game3"])
    assert m["matches"] == {"train": ["game0"], "val": ["game1", "game2"], "test": ["game3"]}
    base_val = load(tmp_path / "o" / "qa_val.json")
    m2 = run(["--annotations", csv_path, "--out", tmp_path / "p", "--val-matches", "game1", "game2",
              "--test-matches", "game3", "--val-to-train", "0.25"])
    moved = m2["qa"]["chunks moved val->train"]
    val_chunks = {q["chunk_id"] for q in base_val}
    assert moved == round(0.25 * len(val_chunks)) > 0
    train = load(tmp_path / "p" / "qa_train.json")
    moved_chunks = {q["chunk_id"] for q in train if not q["chunk_id"].startswith("game0_")}
    assert len(moved_chunks) == moved and moved_chunks <= val_chunks
    assert all(q["split"] == "train" for q in train)


def test_splits_from_the_reference_split_column(tmp_path):
    strokes = fixture_strokes()
    for s in strokes:
        s.split = "val" if s.set == 2 else "train"
    csv_path = write_reference_csv(strokes, tmp_path / "ref.csv")
    run(["--annotations", csv_path, "--out", tmp_path / "o", "--splits", "annotations"])
    val = load(tmp_path / "o" / "val.json")
    assert val and all(v["image_id"].split("_")[-2] == "2" for v in val)
    assert all(q["chunk_id"].split("_")[-3] == "2" for q in load(tmp_path / "o" / "qa_val.json"))


def test_caption_files_and_coco_references_agree(tmp_path):
    m = run(["--annotations", DATA / MATCH / "set1.csv", DATA / MATCH / "set2.csv", DATA / MATCH / "set3.csv",
             "--out", tmp_path / "o", "--splits", "val=1"])
    # the excerpt's set-2 rally 3 has three strokes on frame 66683 (an annotation glitch): all dropped
    all_ids = [s.stroke_id for n in (1, 2, 3) for s in load_shuttleset_set(DATA / MATCH / f"set{n}.csv").strokes]
    by_id = {s.stroke_id: s for s in fixture_strokes() if all_ids.count(s.stroke_id) == 1}
    assert m["skipped"]["two strokes on one hit frame"] == 3
    val = load(tmp_path / "o" / "val.json")
    gt = load(tmp_path / "o" / "val_gt.json")
    assert {v["image_id"] for v in val} == set(by_id) and len(val) == len(by_id)
    for v in val:
        assert v["caption"] == by_id[v["image_id"]].caption and v["image"] == f"clips/{v['image_id']}.mp4"
    assert [i["id"] for i in gt["images"]] == [v["image_id"] for v in val]
    assert {(a["image_id"], a["caption"]) for a in gt["annotations"]} == {(v["image_id"], v["caption"]) for v in val}
    assert len({a["id"] for a in gt["annotations"]}) == len(gt["annotations"])
    assert m["skipped"]["no caption (unknown type or zone)"] + 3 == m["strokes"] - len(val)
    assert m["captions"] == {"train": 0, "val": len(val), "test": 0}
    assert m["questions"]["val"] == 14 * m["qa"]["chunks"]
    assert not m["clips"]


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bd.main(["--annotations", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    assert e.value.code == 1
    assert "nope.csv: no such annotation file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bd.main(["--annotations", str(DATA / MATCH / "set1.csv"), "--out", str(tmp_path / "o"),
                 "--videos", str(tmp_path / "novideos")])
    assert "novideos: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bd.main(["--annotations", str(DATA / MATCH / "set1.csv"), "--out", str(tmp_path / "o"),
                 "--videos", str(tmp_path)])
    assert "no clips could be cut" in capsys.readouterr().err


# ---------------------------------------------------------------- clips end to end


HEADER = (DATA / MATCH / "set1.csv").read_text(encoding="utf-8").splitlines()[0]


def synthetic_set(root: Path, hits: list[tuple[int, int, int]]) -> Path:
    """A set file of (rally, ball_round, frame) smashes hit from the back of alternating halves."""
    court = load_shuttleset_set(DATA / MATCH / "set1.csv").court
    for f in ("match.csv", "homography.csv"):
        shutil.copy(DATA / f, root / f)
    cols = HEADER.split(",")
    lines = [HEADER]
    for rally, rnd, frame in hits:
        y = 12.5 if rnd % 2 else 0.9
        hx, hy = court.to_image(1.0, y)
        px, py = court.to_image(1.2, y)
        cells = {"rally": rally, "ball_round": rnd, "frame_num": frame, "player": "AB"[rnd % 2],
                 "type": "殺球", "hit_x": f"{hx:.1f}", "hit_y": f"{hy:.1f}",
                 "player_location_x": f"{px:.1f}", "player_location_y": f"{py:.1f}",
                 "roundscore_A": 0, "roundscore_B": rally}
        lines.append(",".join(str(cells.get(c, "")) for c in cols))
    (root / MATCH).mkdir(parents=True, exist_ok=True)
    path = root / MATCH / "set1.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_clip(path: Path) -> tuple[list[int], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    idx = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        idx.append(read_index(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    return idx, fps


def test_end_to_end_clips_hold_the_hit_window(tmp_path):
    from core.video import write_video

    hits = [(1, 1, 3), (1, 2, 20), (1, 3, 30), (2, 1, 60), (2, 2, 75), (2, 3, 110), (2, 4, 500)]
    (tmp_path / "ann").mkdir()
    csv_path = synthetic_set(tmp_path / "ann", hits)
    videos = tmp_path / "videos"
    write_video(videos / MATCH / "set1.mp4", (index_frame(i) for i in range(120)), fps=25)
    m = run(["--annotations", csv_path, "--videos", videos, "--out", tmp_path / "o", "--splits", "train=1"])
    assert m["clips"] and m["skipped"]["hit frame outside video"] == 1  # frame 500 of a 120-frame video
    train = load(tmp_path / "o" / "train.json")
    assert len(train) == 6
    for item in train:
        frame = int(item["image_id"].rsplit("_", 1)[1])
        got, fps = read_clip(tmp_path / "o" / item["image"])
        assert len(got) == 16 and fps == pytest.approx(25)
        # frames hit-7 .. hit+8, clamped at the first frame
        assert got == [max(0, i) for i in range(frame - 7, frame + 9)], frame
        assert item["caption"].endswith("hits a smash in the left backcourt")
    qa = load(tmp_path / "o" / "qa_train.json")
    assert {q["chunk_id"] for q in qa} == {f"{MATCH}_1_1_chunk0", f"{MATCH}_1_2_chunk0"}
    assert all((tmp_path / "o" / clip).is_file() for q in qa for clip in q["image"])
    two = [q for q in qa if q["chunk_id"].endswith("_2_chunk0")][0]
    assert len(two["image"]) == 3  # the out-of-video stroke is left out of its rally
