"""Stroke index: tables, idempotent and resumable indexing, the token and caption caches,
corrections kept across re-indexing, caption export and the command line."""
from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import GenerationSettings, LoraSettings, ModelSettings
from core.index import main as index_main
from core.indexer import add_match, encode_set
from core.query import QueryEngine
from core.store import SCHEMA_VERSION, IndexStoreError, StrokeStore
from core.tokens import encoder_key, model_key
from core.video import write_video

DATA = Path(__file__).parent / "data" / "shuttleset"
SET_FILES = sorted(DATA.glob("*/set*.csv"))
FAST = GenerationSettings(num_beams=1, max_new_tokens=6, min_new_tokens=1)
HITS = [(1, 1, 10, 1, "殺球", 9), (1, 2, 20, 0, "挑球", 7), (1, 3, 30, 1, "長球", 9), (1, 4, 40, 0, "切球", 3),
        (1, 5, 50, 1, "放小球", 7), (1, 6, 60, 0, "殺球", 4), (2, 1, 70, 1, "發短球", 5), (2, 2, 80, 0, "放小球", 7),
        (2, 3, 90, 1, "殺球", 9), (2, 4, 105, 0, "勾球", 1)]  # rally, ball_round, frame, upper, type, zone


def write_reference_csv(path: Path, hits=HITS, game: str = "demo") -> Path:
    lines = ["id,rally,ball_round,upper,type,backhand,relabel_hit_area,split"]
    lines += [f"{game}_1_{f},{r},{b},{u},{t},0,{z},test" for r, b, f, u, t, z in hits]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# (rally, hit frame, side, confidence) of a detected set at 25 fps; 0.5 is not below UNCERTAIN_BELOW
DETECTED = [(1, 100, "bottom", 0.9), (1, 150, "upper", 0.3), (1, 200, "bottom", 0.75), (2, 400, "upper", 0.5),
            (2, 450, "bottom", 0.12), (2, 500, "upper", 0.66)]


def write_detected_csv(path: Path, hits=DETECTED) -> Path:
    """A set file in the columns core.detect writes (Ann at the bottom is player A, Bo upper is B)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["rally,ball_round,time,frame_num,roundscore_A,roundscore_B,player,server,type,side,confidence,"
             "rally_winner,rally_start_frame,rally_end_frame,player_name"]
    rounds: dict[int, int] = {}
    for rally, frame, side, conf in hits:
        rounds[rally] = rounds.get(rally, 0) + 1
        frames = [f for q, f, _, _ in hits if q == rally]
        letter, name = ("A", "Ann") if side == "bottom" else ("B", "Bo")
        server = 1 if rounds[rally] == 1 else ""
        lines.append(f"{rally},{rounds[rally]},0:00:{frame // 25:02d},{frame},,,{letter},{server},,{side},"
                     f"{conf:.3f},,{min(frames) - 10},{max(frames) + 10},{name}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_model(base, seed: int = 0):
    """The stroke model on the tiny base, with every LoRA weight and new parameter set to a value."""
    from core.loader import build_model

    model = build_model(ModelSettings(base=str(base), num_frames=4, lora=LoraSettings(
        qformer_parts=("cross_attn",), qformer_r=2, llm_part="attn", llm_r=2)))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.vlm.named_parameters():
            if "lora_" in name or name in ("frame_embed", "clip_embed"):
                p.normal_(0, 0.2)
    return model


def count_calls(model) -> dict:
    """Count encode_clips and generate calls on this model instance."""
    counts = {"encode": 0, "clips": 0, "generate": 0}
    encode, generate = model.vlm.encode_clips, model.vlm.generate

    def counted_encode(pixels):
        counts["encode"] += 1
        counts["clips"] += pixels.shape[0]
        return encode(pixels)

    def counted_generate(*args, **kwargs):
        counts["generate"] += 1
        return generate(*args, **kwargs)

    model.vlm.encode_clips, model.vlm.generate = counted_encode, counted_generate
    return counts


@pytest.fixture(scope="module")
def model(tiny_base):
    return tiny_model(tiny_base)


@pytest.fixture()
def ref_csv(tmp_path):
    return write_reference_csv(tmp_path / "demo.csv")


def token_files(index: StrokeStore) -> list[Path]:
    return sorted(index.token_dir.rglob("*.npy")) if index.token_dir.exists() else []


# ---------------------------------------------------------------- annotations alone


def test_annotation_only_index_of_real_sets(tmp_path):
    index = StrokeStore(tmp_path / "ws.sqlite")
    ids = {add_match(index, f) for f in SET_FILES}
    assert len(ids) == 1  # three sets of one match
    (m,) = index.matches()
    assert (m["player_a"], m["player_b"], m["sets"], m["status"]) == ("Kento MOMOTA", "CHOU Tien Chen", 3, "complete")
    rows = index.strokes()
    assert len(rows) == m["strokes"] == sum(1 for f in SET_FILES for _ in open(f, encoding="utf-8")) - 3
    assert index.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    first = rows[0]
    assert first["player_name"] == "Kento MOMOTA" and first["caption"] == first["ann_caption"]
    assert first["start_s"] < first["time_s"] < first["end_s"] and first["fps"] in (25.0, 29.97, 30.0)
    rallies = index.db.execute("SELECT * FROM rallies ORDER BY set_id, rally").fetchall()
    pairs = [(p, r) for p, r in zip(rallies, rallies[1:]) if p["set_id"] == r["set_id"]]
    assert pairs and all((r["score_a_before"], r["score_b_before"]) == (p["score_a"], p["score_b"]) for p, r in pairs)
    generation = index.generation()
    assert add_match(index, SET_FILES[0]) in ids and index.generation() == generation  # the same set again: nothing
    assert len(index.strokes()) == len(rows)
    assert index.strokes(m["id"], set_no=2, rally=3, ball_round=2)[0]["frame"] == 66683


def test_failed_write_leaves_no_half_written_rows(tmp_path, monkeypatch):
    import core.store as ci

    index = StrokeStore(tmp_path / "ws.sqlite")
    monkeypatch.setattr(ci, "_rallies", lambda *a: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        add_match(index, SET_FILES[0])
    assert index.db.execute("SELECT count(*) FROM strokes").fetchone()[0] == 0
    assert index.db.execute("SELECT count(*) FROM sets").fetchone()[0] == 0
    monkeypatch.undo()
    add_match(index, SET_FILES[0])
    assert index.db.execute("SELECT count(*) FROM strokes").fetchone()[0] > 0


def test_a_schema_1_index_gets_court_positions_from_its_annotation_files(tmp_path):
    path = tmp_path / "ws.sqlite"
    store = StrokeStore(path)
    add_match(store, SET_FILES[0])
    placed = store.db.execute("SELECT count(*) FROM strokes WHERE hit_x IS NOT NULL").fetchone()[0]
    store.close()
    assert placed > 0
    with sqlite3.connect(path) as db:  # the same index as the app wrote it before court positions were stored
        db.execute("DROP VIEW stroke_captions")
        for col in ("hit_x", "hit_y", "land_x", "land_y", "source_frame", "edited", "confidence",  # schema 2-4
                    "backhand", "aroundhead", "hit_height", "win_reason", "lose_reason", "getpoint"):  # schema 5
            db.execute(f"ALTER TABLE strokes DROP COLUMN {col}")
        db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    store = StrokeStore(path)
    assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert store.db.execute("SELECT count(*) FROM strokes WHERE hit_x IS NOT NULL").fetchone()[0] == placed
    assert all(r["caption"] for r in store.strokes())  # the view is back


def test_a_schema_3_index_gets_confidences_from_its_set_files(tmp_path, ref_csv):
    path = tmp_path / "ws.sqlite"
    store = StrokeStore(path)
    detected = add_match(store, write_detected_csv(tmp_path / "m" / "set1.csv"))
    annotated = add_match(store, ref_csv)
    gone = add_match(store, write_detected_csv(tmp_path / "gone" / "set1.csv"))
    moved = store.move_stroke(store.strokes(detected, frame=100)[0]["id"], 1)
    before = {r["id"]: r["confidence"] for r in store.strokes()}
    store.close()
    (tmp_path / "gone" / "set1.csv").unlink()  # a set file that is no longer there gives no confidences
    with sqlite3.connect(path) as db:  # the same index as schema 3 left it: no confidence column
        db.execute("DROP VIEW stroke_captions")
        db.execute("ALTER TABLE strokes DROP COLUMN confidence")
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    store = StrokeStore(path)
    assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    after = {r["id"]: r["confidence"] for r in store.strokes(detected)}
    assert after == {k: v for k, v in before.items() if k in after}
    assert after[moved] == 1.0 and sorted(after.values()) == [0.12, 0.3, 0.5, 0.66, 0.75, 1.0]
    assert {r["confidence"] for m in (annotated, gone) for r in store.strokes(m)} == {None}
    assert all(r["caption"] for r in store.strokes(annotated))  # the view is back


OUTCOME_COLUMNS = ("backhand", "aroundhead", "hit_height", "win_reason", "lose_reason", "getpoint")


def _csv_outcomes(path: Path) -> list[tuple]:
    """Per row of a ShuttleSet set file, as the store should hold it (a direct read of the CSV)."""
    flag = lambda v: int(float(v)) if v else (0 if v == "" else None)  # noqa: E731
    with open(path, encoding="utf-8") as f:
        return [(int(float(r["rally"])), int(float(r["ball_round"])), flag(r["backhand"]), flag(r["aroundhead"]),
                 {"1": "above", "2": "below"}.get(r["hit_height"].split(".")[0]), r["win_reason"] or None,
                 r["lose_reason"] or None, r["getpoint_player"] or None) for r in csv.DictReader(f)]


def test_technique_and_outcome_fields_are_stored_as_annotated_and_migrated_into_a_schema_4_index(tmp_path):
    path = tmp_path / "ws.sqlite"
    store = StrokeStore(path)
    add_match(store, SET_FILES[0])
    query = "SELECT rally, ball_round, " + ", ".join(OUTCOME_COLUMNS) + " FROM strokes ORDER BY rally, ball_round"
    stored = [tuple(r) for r in store.db.execute(query)]
    assert sorted(stored) == sorted(_csv_outcomes(SET_FILES[0]))
    assert {r[-1] for r in stored} - {None} and {r[4] for r in stored} == {"above", "below"}
    store.close()
    with sqlite3.connect(path) as db:  # the same index as schema 4 left it
        db.execute("DROP VIEW stroke_captions")
        for col in OUTCOME_COLUMNS:
            db.execute(f"ALTER TABLE strokes DROP COLUMN {col}")
        db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    store = StrokeStore(path)
    assert [tuple(r) for r in store.db.execute(query)] == stored


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ws.sqlite"
    StrokeStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(IndexStoreError, match="newer"):
        StrokeStore(path)


# ---------------------------------------------------------------- with video and model


def test_model_pass_caches_tokens_and_captions_and_reindex_is_free(tmp_path, ref_csv, index_video, model):
    counts = count_calls(model)
    index = StrokeStore(tmp_path / "ws.sqlite")
    progress = []
    match_id = add_match(index, ref_csv, video=index_video, model=model, batch_size=4, settings=FAST,
                               progress=lambda d, t, w: progress.append((d, t)))
    assert counts["clips"] == len(HITS) and counts["encode"] == 3  # batches of 4, 4, 2
    assert counts["generate"] == 1  # captions come from the same tokens (no second vision pass), 32 at a time
    assert progress[0] == (0, 10) and progress[-1] == (10, 10)
    files = token_files(index)
    assert len(files) == len(HITS) and np.load(files[0]).shape == (model.vlm.num_query_tokens,
                                                                  model.vlm.base.config.qformer_config.hidden_size)
    assert files[0].parent == index.token_cache(index.video_hash(index_video), encoder_key(model)).folder
    rows = index.strokes(match_id)
    assert all(r["model_caption"] for r in rows) and all(r["caption"] == r["ann_caption"] for r in rows)
    assert rows[0]["start_s"] == pytest.approx(3 / 25) and rows[0]["end_s"] == pytest.approx(19 / 25)
    add_match(index, ref_csv, video=index_video, model=model, batch_size=4, settings=FAST)
    assert counts["clips"] == len(HITS) and counts["generate"] == 1  # nothing recomputed
    assert index.sets()[0]["status"] == "complete"


def test_token_cache_is_keyed_by_video_content_and_model(tmp_path, ref_csv, index_video, tiny_base):
    model = tiny_model(tiny_base)
    counts = count_calls(model)
    index = StrokeStore(tmp_path / "ws.sqlite")
    add_match(index, ref_csv, video=index_video, model=model, settings=FAST)
    assert counts["clips"] == len(HITS)
    copy = shutil.copy(index_video, tmp_path / "renamed.mp4")  # same bytes, another path
    add_match(index, ref_csv, video=copy, model=model, settings=FAST)
    assert counts["clips"] == len(HITS)
    key, mkey = encoder_key(model), model_key(model)
    with torch.no_grad():  # new stage-2 weights in the LLM only: same tokens, new captions
        next(p for n, p in model.vlm.named_parameters() if "lora_B" in n and "language_model" in n).add_(0.5)
    assert encoder_key(model) == key and model_key(model) != mkey
    add_match(index, ref_csv, video=copy, model=model, settings=FAST)
    assert counts["clips"] == len(HITS) and counts["generate"] == 2
    with torch.no_grad():  # new Q-Former weights: new tokens
        next(p for n, p in model.vlm.named_parameters() if "lora_B" in n and "qformer" in n).add_(0.5)
    assert encoder_key(model) != key
    add_match(index, ref_csv, video=copy, model=model, settings=FAST)
    assert counts["clips"] == 2 * len(HITS)
    other = write_video(tmp_path / "other.mp4", (np.full((64, 96, 3), i, np.uint8) for i in range(120)), fps=25)
    assert index.video_hash(other) != index.video_hash(index_video)
    assert index.video_hash(copy) == index.video_hash(index_video)


def test_interrupted_index_resumes_without_half_written_rows(tmp_path, ref_csv, index_video, model):
    counts = count_calls(model)
    index = StrokeStore(tmp_path / "ws.sqlite")

    def stop_after_first_batch(done, total, what):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        add_match(index, ref_csv, video=index_video, model=model, batch_size=4, caption_batch=4, settings=FAST,
                        progress=stop_after_first_batch)
    assert index.matches() == [] and index.strokes() == []  # all or nothing: the set is not there yet
    cached = index.db.execute("SELECT count(*) FROM model_captions").fetchone()[0]
    assert cached == 4 and len(token_files(index)) == 4  # what the next run resumes from
    assert not [p for p in index.token_dir.rglob("*") if p.suffix == ".tmp"]
    add_match(index, ref_csv, video=index_video, model=model, batch_size=4, settings=FAST)
    assert counts["clips"] == len(HITS)  # 4 before the stop, 6 after: none twice
    assert all(r["model_caption"] for r in index.strokes()) and index.sets()[0]["status"] == "complete"


def test_plain_hit_frames_with_a_model(tmp_path, index_video, model):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, None, video=index_video, model=model, frames=[12, 40, 41, 90], settings=FAST)
    rows = index.strokes(match_id)
    assert [r["frame"] for r in rows] == [12, 40, 41, 90] and all(r["side"] is None for r in rows)
    assert all(r["caption"] == r["model_caption"] for r in rows)
    assert index.matches()[0]["name"] == Path(index_video).stem


# ---------------------------------------------------------------- corrections and export


def test_corrections_survive_reindexing_and_are_exported(tmp_path, ref_csv):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, ref_csv)
    target = index.strokes(match_id, rally=2, ball_round=2)[0]
    index.set_caption(target["id"], "bottom player hits a  push at the net")
    changed = [h if h[2] != 30 else (1, 3, 30, 1, "切球", 9) for h in HITS]  # the annotation changes
    write_reference_csv(ref_csv, changed)
    add_match(index, ref_csv)
    again = index.strokes(match_id, rally=2, ball_round=2)[0]
    assert again["corrected"] == again["caption"] == "bottom player hits a push at the net"
    assert index.strokes(match_id, frame=30)[0]["stroke"] == "drop"
    out = tmp_path / "train.json"
    assert index.export_captions(out) == len(HITS)
    items = json.loads(out.read_text())
    assert set(items[0]) == {"caption", "image", "image_id"}
    item = next(i for i in items if i["image_id"] == "demo_1_80")
    assert item == {"caption": "bottom player hits a push at the net", "image": "clips/demo_1_80.mp4",
                    "image_id": "demo_1_80"}
    index.set_caption(again["id"], "")
    assert index.strokes(match_id, frame=80)[0]["caption"] == "bottom player hits a net shot at the net"


# ---------------------------------------------------------------- detection confidence


def test_a_detected_set_s_confidences_reach_the_store_and_the_query_results(tmp_path):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, write_detected_csv(tmp_path / "m" / "set1.csv"))
    rows = index.strokes(match_id)
    assert [(r["frame"], r["confidence"]) for r in rows] == [(f, c) for _, f, _, c in DETECTED]
    assert [r["frame"] for r in index.strokes(match_id, uncertain=True)] == [150, 450]
    results = QueryEngine(index).ask("when does the upper player hit?", paths=("structured",)).results
    assert {(r.frame, r.confidence) for r in results} == {(150, 0.3), (400, 0.5), (500, 0.66)}
    assert [r.row()["confidence"] for r in results] == [r.confidence for r in results]


def test_hand_annotated_strokes_have_no_confidence_until_edited(tmp_path, ref_csv):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, ref_csv)
    add_match(index, SET_FILES[0])
    assert {r["confidence"] for r in index.strokes()} == {None} and index.strokes(uncertain=True) == []
    assert {r.confidence for r in QueryEngine(index).ask("smashes", paths=("structured",)).results} == {None}
    moved = index.move_stroke(index.strokes(match_id, frame=30)[0]["id"], -1)
    assert [(r["id"], r["confidence"]) for r in index.strokes(match_id) if r["confidence"]] == [(moved, 1.0)]
    out = index.export_set_csv(index.strokes(match_id)[0]["set_id"], tmp_path / "out")
    assert {int(r["frame_num"]): r["confidence"] for r in csv.DictReader(out.open(encoding="utf-8"))
            if r["confidence"]} == {29: "1.0"}


def test_an_added_or_edited_detection_reads_1_and_the_export_writes_the_stored_confidences(tmp_path):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, write_detected_csv(tmp_path / "m" / "set1.csv"))
    by_frame = {r["frame"]: r for r in index.strokes(match_id)}
    set_id = by_frame[100]["set_id"]
    moved = index.move_stroke(by_frame[150]["id"], 2)
    flipped = index.set_stroke_side(by_frame[450]["id"], "upper")
    added = index.add_stroke(set_id, 300, "bottom")
    conf = {r["id"]: r["confidence"] for r in index.strokes(match_id)}
    assert conf[moved] == conf[flipped] == conf[added] == 1.0
    assert conf[by_frame[200]["id"]] == 0.75 and index.strokes(match_id, uncertain=True) == []
    (tmp_path / "m" / "set1.csv").write_text("rally\n")  # the export no longer reads confidences from the source
    out = index.export_set_csv(set_id, tmp_path / "out")
    exported = {int(r["frame_num"]): r["confidence"] for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert exported == {100: "0.9", 152: "1.0", 200: "0.75", 300: "1.0", 400: "0.5", 450: "1.0", 500: "0.66"}


def test_undoing_an_edit_brings_back_the_detector_s_confidence(tmp_path):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, write_detected_csv(tmp_path / "m" / "set1.csv"))
    moved = index.move_stroke(index.strokes(match_id, frame=150)[0]["id"], 2)
    assert index.strokes(ids=[moved])[0]["confidence"] == 1.0
    index.revert_stroke(moved)
    assert index.strokes(match_id, frame=150)[0]["confidence"] == 0.3


# ---------------------------------------------------------------- command line


def test_index_command(tmp_path, capsys):
    db = tmp_path / "ws.sqlite"
    assert index_main(["NONE", "--annotations", str(SET_FILES[0]), "--db", str(db), "--no-embed"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["player_a"] == "Kento MOMOTA" and out["strokes"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert index_main(["NONE", "--annotations", str(bad), "--db", str(db)]) == 1
    assert "neither a ShuttleSet" in capsys.readouterr().err


def test_caption_view_shows_the_caption_in_order_of_preference(tmp_path, ref_csv):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, ref_csv)
    first = index.strokes(match_id)[0]
    index.set_caption(first["id"], "upper player hits a clear in the backcourt")
    rows = index.db.execute("SELECT id, corrected_caption, caption FROM stroke_captions ORDER BY id").fetchall()
    assert tuple(rows[0]) == (first["id"], "upper player hits a clear in the backcourt",
                              "upper player hits a clear in the backcourt")
    assert rows[1]["corrected_caption"] is None and rows[1]["caption"] == index.strokes(match_id)[1]["ann_caption"]


def test_annotations_again_without_video_keep_the_video(tmp_path, ref_csv, index_video):
    index = StrokeStore(tmp_path / "ws.sqlite")
    add_match(index, ref_csv, video=index_video)
    write_reference_csv(ref_csv, HITS[:-1])
    match_id = add_match(index, ref_csv)
    rows = index.strokes(match_id)
    assert len(rows) == len(HITS) - 1 and rows[0]["video"] == str(Path(index_video).resolve())
    assert rows[0]["start_s"] == pytest.approx(3 / 25)
    with pytest.raises(ValueError, match="needs the video"):
        add_match(index, ref_csv, model=object())


def test_strokes_by_id(tmp_path, ref_csv):
    index = StrokeStore(tmp_path / "ws.sqlite")
    match_id = add_match(index, ref_csv)
    every = index.strokes(match_id)
    picked = index.strokes(ids=[every[3]["id"], every[1]["id"]])
    assert [r["id"] for r in picked] == [every[1]["id"], every[3]["id"]] and index.strokes(ids=[]) == []
