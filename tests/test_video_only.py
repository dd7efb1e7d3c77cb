"""A match from its video alone: detection (core.detect) writes a set CSV beside the index, the set
is indexed like any annotation file (captions and tokens from the model), questions answer it; the
detected strokes are edited (added, deleted, moved, given to the other player), the edits survive
re-indexing and re-detection, and export as a set CSV that core.annotations imports.

Most tests stand a fixed Detection in for core.detect.detect (the detector's own tests cover
detection); one runs the shipped detector on a short render when assets/detector exists."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.annotations import load_annotations
from core.config import GenerationSettings
from core.engine import Engine, EngineError
from core.index import main as index_main
from core.store import SCHEMA_VERSION, StrokeStore
from tests.test_index import tiny_model

det = pytest.importorskip("core.detect")

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = ROOT / "assets" / "detector"
SET_CSV = ROOT / "tests/data/shuttleset/Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals/set1.csv"
FAST = GenerationSettings(num_beams=1, max_new_tokens=6, min_new_tokens=1)
PLAYERS = ("Ann Bottom", "Bo Upper")
# (rally, frame, side): two rallies on the 120-frame test video (25 fps); Ann (A) starts at the bottom
HITS = [(1, 12, "bottom"), (1, 24, "upper"), (1, 36, "bottom"), (2, 70, "upper"), (2, 84, "bottom"),
        (2, 98, "upper")]


def detection(hits=HITS, players=PLAYERS) -> det.Detection:
    letter = {"bottom": "A", "upper": "B"}
    strokes, rounds = [], {}
    for rally, frame, side in hits:
        rounds[rally] = rounds.get(rally, 0) + 1
        strokes.append(det.DetectedStroke(rally, rounds[rally], frame, frame / 25.0, side,
                                          players[letter[side] == "B"] if players else letter[side], 0.9))
    rallies = [det.DetectedRally(r, min(f for q, f, _ in hits if q == r) - 5, max(f for q, f, _ in hits if q == r) + 5,
                                 "upper" if r == 1 else None) for r in sorted(rounds)]
    return det.Detection(strokes, rallies, 25.0, 120, players=players)


@pytest.fixture()
def detected(monkeypatch):
    """core.detect.detect answers with `state['hits']` (a test changes them to re-detect differently)."""
    state = {"hits": list(HITS), "calls": 0}

    def fake(video, detector=None, players=None, first_server=None, progress=None, **kw):
        state["calls"] += 1
        if progress:
            progress(120, 120, "decoding")
        return detection(state["hits"], det.check_players(players))

    monkeypatch.setattr(det, "detect", fake)
    return state


@pytest.fixture(scope="module")
def model(tiny_base):
    return tiny_model(tiny_base)


@pytest.fixture()
def engine(tmp_path, index_video, model):
    eng = Engine(tmp_path / "ws")
    eng.model, eng.source = model, "tiny"
    dest = eng.workspace.uploads / "m"
    dest.mkdir(parents=True)
    shutil.copy(index_video, dest / "rally.mp4")
    return eng


def _add(engine) -> int:
    return engine.add_match(None, "uploads/m/rally.mp4", players=PLAYERS, first_server="bottom")


def _hits(engine, match_id) -> list[tuple]:
    return [(r["rally"], r["ball_round"], r["frame"], r["side"], r["player_name"]) for r in engine.strokes(match_id)]


def test_a_video_alone_is_detected_indexed_and_answers_questions(engine, detected):
    match_id = _add(engine)
    csv_path = engine.workspace.root / "detected" / "rally" / "set1.csv"
    assert csv_path.is_file()
    rows = engine.strokes(match_id)
    assert [(r["rally"], r["frame"], r["side"]) for r in rows] == HITS
    assert {r["player_name"] for r in rows if r["side"] == "bottom"} == {"Ann Bottom"}
    assert all(r["model_caption"] for r in rows)  # captions from the model, tokens cached
    assert all(r["caption"] == r["model_caption"] for r in rows)  # no stroke type: no annotation caption
    m = next(m for m in engine.matches() if m["id"] == match_id)
    assert (m["player_a"], m["player_b"], m["strokes"]) == (*PLAYERS, 6)
    ans = engine.ask("when does Bo Upper hit?", match_id)
    assert {r["frame"] for r in ans.rows} == {24, 70, 98}
    # the same video again: detected again, nothing changes
    assert _add(engine) == match_id and detected["calls"] == 2 and len(engine.strokes(match_id)) == 6


def test_bad_player_names_and_no_input_are_clear_errors(engine, detected):
    with pytest.raises(EngineError, match="two names"):
        engine.add_match(None, "uploads/m/rally.mp4", players=("Ann", "Bo", "Cy"))
    with pytest.raises(EngineError, match="give the match video"):
        engine.add_match(None, None)


def test_the_index_command_detects_a_video_without_annotations(tmp_path, index_video, detected, capsys):
    db = tmp_path / "ws" / "index.sqlite"
    assert index_main([str(index_video), "--db", str(db), "--players", "Ann Bottom, Bo Upper", "--no-embed"]) == 0
    out = capsys.readouterr().out
    assert str(db.parent / "detected" / "indexed" / "set1.csv") in out
    store = StrokeStore(db)
    assert [(r["rally"], r["frame"], r["side"]) for r in store.strokes()] == HITS
    assert index_main([str(index_video), "--db", str(db), "--players", "Ann"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: players: expected two names") and "Traceback" not in err
    assert index_main(["NONE", "--db", str(db)]) == 2


def test_edited_strokes_survive_reindexing_and_redetection(engine, detected):
    match_id = _add(engine)
    rows = engine.strokes(match_id)
    by_frame = {r["frame"]: r["id"] for r in rows}
    moved = engine.move_stroke(by_frame[24], 5)  # 24 -> 29
    flipped = engine.set_stroke_side(by_frame[84], "upper")  # hit by Bo, not Ann
    engine.delete_stroke(by_frame[98])
    added = engine.add_stroke(match_id, 50 / 25.0)  # frame 50: after rally 1's last hit, nearer to it
    after = _hits(engine, match_id)
    assert after == [(1, 1, 12, "bottom", "Ann Bottom"), (1, 2, 29, "upper", "Bo Upper"),
                     (1, 3, 36, "bottom", "Ann Bottom"), (1, 4, 50, "upper", "Bo Upper"),
                     (2, 1, 70, "upper", "Bo Upper"), (2, 2, 84, "upper", "Bo Upper")]
    edited = {r["frame"]: r for r in engine.strokes(match_id)}
    assert (edited[29]["id"], edited[84]["id"], edited[50]["id"]) == (moved, flipped, added)
    assert [edited[f]["edited"] for f in (12, 29, 50, 84)] == [None, "moved", "added", "side"]
    assert edited[29]["model_caption"] and edited[50]["model_caption"]  # re-captioned with the loaded model
    assert engine.index.token_cache(engine.index.sets(match_id)[0]["video_hash"], engine.index.sets(match_id)[0]
                                    ["encoder_key"]).has(50)
    # re-detection finds one more hit: the set is written again from the new CSV, edits applied
    detected["hits"] = HITS + [(2, 110, "bottom")]
    _add(engine)
    assert _hits(engine, match_id) == after + [(2, 3, 110, "bottom", "Ann Bottom")]
    # a new store on the same file (the app restarted) sees the same, and the edits are listed
    store = StrokeStore(engine.workspace.index_path)
    assert {(e["frame"], e["action"]) for e in store.stroke_edits(match_id)} == {
        (24, "change"), (84, "change"), (98, "delete"), (50, "add")}
    # undo: the moved stroke goes back
    engine.revert_stroke(moved)
    assert [r["frame"] for r in engine.strokes(match_id)][:3] == [12, 24, 36]


def test_edits_are_refused_where_they_cannot_apply(engine, detected):
    match_id = _add(engine)
    first = engine.strokes(match_id)[0]
    with pytest.raises(ValueError, match="already has a stroke at frame 24"):
        engine.move_stroke(first["id"], 12)
    with pytest.raises(ValueError, match="before the video's start"):
        engine.move_stroke(first["id"], -20)
    with pytest.raises(ValueError, match="'bottom' or 'upper'"):
        engine.set_stroke_side(first["id"], "left")
    with pytest.raises(EngineError, match="no stroke"):
        engine.delete_stroke(10**6)
    moved = engine.move_stroke(first["id"], 1)  # 12 -> 13: frame 12 holds its edit
    with pytest.raises(ValueError, match="frame 12 is where a moved or changed stroke was detected"):
        engine.add_stroke(match_id, 12 / 25.0)
    added = engine.add_stroke(match_id, 50 / 25.0)
    with pytest.raises(ValueError, match="frame 12 is where"):
        engine.move_stroke(added, -38)
    engine.delete_stroke(moved)
    back = engine.add_stroke(match_id, 12 / 25.0)  # where a deleted stroke was: it comes back
    row = next(r for r in engine.strokes(match_id) if r["id"] == back)
    assert (row["frame"], row["edited"], row["source_frame"]) == (12, None, 12)


def test_the_exported_set_csv_imports_with_the_edits(engine, detected):
    match_id = _add(engine)
    by_frame = {r["frame"]: r["id"] for r in engine.strokes(match_id)}
    engine.set_stroke_side(by_frame[36], "upper")
    engine.add_stroke(match_id, 90 / 25.0, side="bottom")
    paths = engine.export_strokes(match_id)
    assert [p.name for p in paths] == ["set1.csv"] and paths[0].parent.name == "rally"
    assert paths[0].read_text().splitlines()[0] == ",".join(det.CSV_COLUMNS)  # the detector's own columns
    table = load_annotations(paths[0])
    assert table.players == {"A": "Ann Bottom", "B": "Bo Upper"}
    assert [(s.rally, s.ball_round, s.frame, s.side, s.player_name) for s in table.strokes] == _hits(engine, match_id)
    # the export indexes as annotations of the same match (its training-data use: same frames and sides)
    other = StrokeStore(engine.workspace.root / "other.sqlite")
    from core.indexer import add_match

    mid = add_match(other, paths[0])
    assert [(r["rally"], r["frame"], r["side"]) for r in other.strokes(mid)] == \
        [(r["rally"], r["frame"], r["side"]) for r in engine.strokes(match_id)]


def test_a_schema_2_index_migrates_and_keeps_its_strokes(tmp_path):
    path = tmp_path / "old.sqlite"
    store = StrokeStore(path)
    from core.indexer import add_match

    match_id = add_match(store, SET_CSV)
    before = [(r["id"], r["frame"], r["side"], r["caption"]) for r in store.strokes(match_id)]
    store.close()
    db = sqlite3.connect(path)  # as schema 2 left it: no edit columns, no edits table
    db.executescript("ALTER TABLE strokes DROP COLUMN source_frame; ALTER TABLE strokes DROP COLUMN edited;"
                     "DROP TABLE stroke_edits; UPDATE meta SET value='2' WHERE key='schema_version';")
    db.close()
    store = StrokeStore(path)
    assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    rows = store.strokes(match_id)
    assert [(r["id"], r["frame"], r["side"], r["caption"]) for r in rows] == before
    assert all(r["source_frame"] == r["frame"] and r["edited"] is None for r in rows)
    store.delete_stroke(rows[0]["id"])
    assert len(store.strokes(match_id)) == len(rows) - 1


def test_the_tabs_add_a_video_alone_and_edit_its_strokes(engine, detected):
    import gradio as gr

    from ui import analyze_tab, strokes_tab
    from ui.common import bind

    picker, status = analyze_tab.on_add(engine, None, None, "uploads/m/rally.mp4", "", "m", bottom="Ann Bottom",
                                        upper="Bo Upper", first_server="bottom")
    match_id = picker.value
    assert status == "Detected 6 strokes; added rally."  # named after its video
    # Gradio fills the progress tracker in its place and passes the 9 inputs around it
    from gradio.helpers import special_args

    args, progress_index = special_args(bind(analyze_tab.on_add, engine), list(range(9)))[:2]
    assert progress_index == 5 and args[:5] == [0, 1, 2, 3, 4] and args[6:] == [5, 6, 7, 8]
    values = ["all"] * len(strokes_tab.FILTERS)
    video, set_no, name = strokes_tab.on_edit_video(engine, match_id)
    assert name == Path(video).name
    assert Path(video).name.startswith("rally") and set_no == 1  # the video or its browser copy
    rows, table, count, sid, note = strokes_tab.on_add_hit(engine, "2.0", "", match_id, set_no, *values)
    assert count == "7 strokes" and note.startswith("Added a hit at 2.00 s (frame 50, rally 1")
    assert next(t for t in table if t[0] == sid)[-2:] == [50, "added"]
    rows, table, count, sid, note = strokes_tab.on_move(engine, "-1", sid, match_id, *values)
    assert next(r["frame"] for r in rows if r["id"] == sid) == 49 and note == "Moved the stroke -1 frame."
    rows, *_ , sid, note = strokes_tab.on_flip(engine, sid, rows, match_id, *values)
    assert next(r["side"] for r in rows if r["id"] == sid) == "bottom"
    rows, table, count, sid, note = strokes_tab.on_delete(engine, sid, match_id, *values)
    assert count == "6 strokes" and sid is None
    files = strokes_tab.on_export_strokes(engine, match_id)
    assert files[-1].endswith("set1.csv") and len(load_annotations(files[-1]).strokes) == 6
    with pytest.raises(gr.Error, match="Play the match video"):
        strokes_tab.on_add_hit(engine, "", "", match_id, set_no, *values)
    with pytest.raises(gr.Error, match="Click a stroke first."):
        strokes_tab.on_move(engine, "+5", None, match_id, *values)


@pytest.mark.skipif(not (DETECTOR / "detector.json").is_file(), reason="no shipped detector in assets/detector")
def test_the_shipped_detector_on_a_render_indexes_and_answers(tmp_path, model):
    subprocess.run([sys.executable, "-m", "train.replay", "--set", str(SET_CSV), "--out", str(tmp_path / "r"),
                    "--rallies", "1-2", "--size", "320x180"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    video = next((tmp_path / "r").rglob("set1.mp4"))
    eng = Engine(tmp_path / "ws")
    eng.model, eng.source = model, "tiny"
    dest = eng.workspace.uploads / "render"
    dest.mkdir(parents=True)
    shutil.copy(video, dest / "set1.mp4")
    match_id = eng.add_match(None, "uploads/render/set1.mp4", players=("CHOU Tien Chen", "Kento MOMOTA"))
    rows = eng.strokes(match_id)  # how many the detector finds is its own tests' business (tests/test_detect.py)
    assert rows and all(r["model_caption"] for r in rows)
    assert {r["player_name"] for r in rows} <= {"CHOU Tien Chen", "Kento MOMOTA"}
    side = rows[0]["side"]
    ans = eng.ask(f"when does the {side} player hit?", match_id)
    assert sorted(r["id"] for r in ans.rows) == sorted(r["id"] for r in rows if r["side"] == side)


def test_without_a_model_a_video_alone_answers_and_a_moved_hit_stays_uncaptioned(engine, detected):
    engine.model = None
    match_id = _add(engine)
    assert all(r["caption"] is None for r in engine.strokes(match_id))  # no model: no captions yet
    ans = engine.ask("when does the upper player hit?", match_id)
    assert {r["frame"] for r in ans.rows} == {24, 70, 98}
    moved = engine.move_stroke(engine.strokes(match_id)[0]["id"], 1)
    row = next(r for r in engine.strokes(match_id) if r["id"] == moved)
    assert (row["frame"], row["model_caption"], row["edited"]) == (13, None, "moved")


def test_a_video_named_as_a_shuttleset_set_is_that_set_of_its_folders_match(engine, detected, index_video):
    dest = engine.workspace.uploads / "Final_2024"
    dest.mkdir()
    shutil.copy(index_video, dest / "set2.mp4")
    match_id = engine.add_match(None, "uploads/Final_2024/set2.mp4", players=PLAYERS)
    assert (engine.workspace.root / "detected" / "Final_2024" / "set2.csv").is_file()
    assert [(s["set_no"], s["n_strokes"]) for s in engine.index.sets(match_id)] == [(2, 6)]
    assert next(m["name"] for m in engine.matches() if m["id"] == match_id) == "Final_2024"
