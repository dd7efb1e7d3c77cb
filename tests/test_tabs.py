"""The tabs' handlers called directly, as Gradio calls them, on a real engine over a small workspace:
the ShuttleSet set of tests/data (29 strokes, court positions, no video) and a 120-frame synthetic
video with a reference CSV of seven strokes; the Train tab's runs are processes of a stand-in recipe."""
from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import pytest
import yaml
from gradio.helpers import special_args

from core.engine import Engine
from core.config import LoraSettings, ModelSettings
from core.loader import build_model, save_adapters
from core.runner import REQUEST_FILE, Runner
from tests.test_index import write_detected_csv
from tests.test_ui_logic import _add, _fake_recipe, _wait, engine  # noqa: F401 - the engine fixture, reused
from train.config import Stage1Config, Stage2Config, option_defaults
from ui import analyze_tab, build_app, model_tab, stats_tab, strokes_tab, train_tab
from ui.common import bind

FPS = 25
# rally, ball_round, hit frame, upper (1) or bottom (0) player, ShuttleSet type, hit zone
HITS = [(1, 1, 10, 1, "殺球", 9), (1, 2, 20, 0, "挑球", 7), (1, 3, 30, 1, "長球", 9), (1, 4, 40, 0, "切球", 3),
        (2, 1, 70, 1, "發短球", 5), (2, 2, 80, 0, "殺球", 7), (2, 3, 100, 1, "殺球", 9)]
SMASHES = [1, 6, 7]  # stroke ids of the three smashes, in time order


def _select(row: int) -> gr.SelectData:
    """The event Gradio passes for a click on a table cell of `row`."""
    return gr.SelectData(None, {"index": [row, 3], "value": ""})


def _add_video_match(engine, video, folder: str, name: str) -> tuple:  # noqa: F811
    """The HITS as a reference CSV of match `name` beside a copy of `video` in uploads/`folder`,
    added through the Analyze tab's paths inside the workspace: (picker, status)."""
    where = engine.workspace.uploads / folder
    where.mkdir()
    shutil.copy(video, where / f"{name}.mp4")
    lines = ["id,rally,ball_round,upper,type,backhand,relabel_hit_area,split"]
    lines += [f"{name}_1_{f},{r},{b},{u},{t},0,{z},test" for r, b, f, u, t, z in HITS]
    (where / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return analyze_tab.on_add(engine, None, None, f"uploads/{folder}/{name}.mp4", f"uploads/{folder}/{name}.csv", "m")


@pytest.fixture
def video_match(engine, index_video) -> int:  # noqa: F811
    """A match with a video, added through the Analyze tab's paths inside the workspace."""
    picker, status = _add_video_match(engine, index_video, "v", "demo")
    assert status == "Added demo (7 strokes)." and picker.value in [v for _, v in picker.choices]
    return picker.value


def test_every_child_of_the_tab_bar_is_a_tab(engine):  # noqa: F811
    """A component made outside a tab's block (a State too) would sit in the tab bar and shift the
    tabs' labels in the page."""
    app = build_app(engine)
    (tabs,) = [b for b in app.blocks.values() if isinstance(b, gr.Tabs)]
    assert [c.label for c in tabs.children] == ["Analyze", "Strokes", "Model", "Train", "Stats", "Summary"]
    assert all(isinstance(c, gr.Tab) for c in tabs.children)


def test_a_set_file_without_a_match_file_takes_the_player_names_typed_in_the_form(engine):  # noqa: F811
    from tests.test_ui_logic import SET_CSV

    folder = engine.workspace.uploads / "solo" / "Some_Open_Final"  # no match.csv beside: players A and B
    folder.mkdir(parents=True)
    (folder / "set1.csv").write_bytes(SET_CSV.read_bytes())
    picker, status = analyze_tab.on_add(engine, None, None, "", "uploads/solo/Some_Open_Final/set1.csv", "m",
                                        bottom="Ann  Bottom", upper="Bea Upper")
    rows = engine.strokes(picker.value)
    first = min(rows, key=lambda r: (r["rally"], r["ball_round"]))
    assert first["player_name"] == ("Ann Bottom" if first["side"] == "bottom" else "Bea Upper")
    assert {r["player_name"] for r in rows} == {"Ann Bottom", "Bea Upper"}
    assert all(r["player_name"] == ("Ann Bottom" if r["player"] == (first["player"] if first["side"] == "bottom"
                                                                    else {"A": "B", "B": "A"}[first["player"]])
                                    else "Bea Upper") for r in rows)  # a player keeps a name as ends change
    ans = engine.ask("Bea Upper's clears", picker.value)
    assert ans.rows and all(r["player_name"] == "Bea Upper" and r["stroke"] == "clear" for r in ans.rows)
    again = analyze_tab.on_add(engine, None, None, "", "uploads/solo/Some_Open_Final/set1.csv", "m",
                               bottom="Cleo", upper="")  # renamed: the other name stays
    assert {r["player_name"] for r in engine.strokes(again[0].value)} == {"Cleo", "Bea Upper"}


def test_bound_handlers_keep_what_gradio_reads(engine):  # noqa: F811
    """Gradio names the endpoint after the callback and fills gr.SelectData and gr.Progress parameters itself."""
    select = bind(analyze_tab.on_select, engine)
    assert select.__name__ == "on_select"
    assert list(inspect.signature(select).parameters) == ["rows", "current_name", "evt", "lead_in", "lead_out", "loop"]
    assert special_args(select)[1:3] == (None, 2)  # (progress index, event data index)
    args = special_args(select, ["rows", "name", 2.0, 0.5, True], event_data=_select(0))[0]
    assert args[:2] == ["rows", "name"] and args[3:] == [2.0, 0.5, True]  # the inputs around the event
    assert special_args(bind(analyze_tab.on_add, engine))[1:3] == (5, None)
    assert special_args(bind(strokes_tab.on_select, engine))[1:3] == (None, 1)


# ---------------------------------------------------------------- Analyze


def test_adding_uploads_moves_them_into_the_workspace(engine, index_video, tmp_path):  # noqa: F811
    csv = tmp_path / "gradio-tmp" / "set.csv"  # Gradio's uploads arrive in a temp folder outside the workspace
    csv.parent.mkdir()
    csv.write_text("id,rally,ball_round,upper,type,backhand,relabel_hit_area,split\nx_1_12,1,1,1,殺球,0,9,test\n")
    picker, status = analyze_tab.on_add(engine, str(index_video), str(csv), "", "", "my match")
    saved = engine.workspace.uploads / "my_match"
    assert (saved / "indexed.mp4").is_file() and (saved / "set.csv").is_file()
    assert status == "Added x (1 stroke)."  # the reference CSV names its match in the ids
    assert [r["stroke"] for r in engine.strokes(picker.value)] == ["smash"]
    with pytest.raises(gr.Error, match="give the match video"):
        bind(analyze_tab.on_add, engine)(None, None, "", "", "nothing")
    before = engine.matches()
    # a video alone is detected first; this one shows no court, so nothing is found and nothing added
    with pytest.raises(gr.Error, match="no strokes detected"):
        bind(analyze_tab.on_add, engine)(str(index_video), None, "", "", "video only")
    assert engine.matches() == before


def test_picking_a_match_loads_its_video_and_clears_the_results(engine, video_match):  # noqa: F811
    match_id, video, name, fps, state, table, timeline, note, counts = analyze_tab.on_match(engine, video_match)
    assert match_id == video_match and video.endswith(name) and (engine.workspace.media / name).is_file()
    assert fps == "25"  # the frame step of the player's keys
    assert state == [] and table["value"] == [] and not timeline.data and note == "" and not counts["visible"]
    no_video = _add(engine)
    assert analyze_tab.on_match(engine, no_video)[1:4] == (None, None, "")
    assert analyze_tab.on_match(engine, no_video)[-2] == "This match has no video; questions still work."
    assert analyze_tab.on_match(engine, None)[:3] == (None, None, None)
    assert no_video in [v for _, v in analyze_tab.on_refresh(engine).choices]


def test_asking_returns_the_rows_their_table_timeline_and_count(engine, video_match):  # noqa: F811
    rows, table, timeline, note, counts = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match,
                                                             "player")
    table = table["value"]
    assert [r["id"] for r in rows] == SMASHES and not counts["visible"]
    assert note == "**“Which strokes are smashes?”**: 3 matching strokes."  # the answer names its question
    one = analyze_tab.on_ask(engine, "When does the upper player play a clear?", video_match, "player")
    assert [r["stroke"] for r in one[0]] == ["clear"] and one[3].endswith("”**: 1 matching stroke.")
    # set, rally, stroke, time (s), player, type, caption, source, confidence (none: hand annotations)
    assert table[0] == [1, 1, 1, 0.4, "upper", "smash", "upper player hits a smash in the backcourt", "exact",
                        ""]
    assert [row[3] for row in table] == [0.4, 3.2, 4.0]
    marks = [t for t in timeline.data if t.mode == "markers"]
    assert sorted(int(c[2]) for t in marks for c in t.customdata) == [0, 1, 2]  # one mark per row, by row index
    assert {t.name for t in analyze_tab.on_lanes(engine, rows, "side").data} == {"upper player", "bottom player"}
    assert not analyze_tab.on_lanes(engine, None, "player").data
    by_stroke = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "stroke")[2]
    assert {t.name for t in by_stroke.data} == {"smash"}


def test_the_timeline_bands_every_rally_with_its_score_and_zooms_to_one(engine, video_match):  # noqa: F811
    rows, _, timeline, *_ = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")
    spans = engine.rally_spans(video_match)
    assert [(r["rally"], r["shots"]) for r in spans] == [(1, 4), (2, 3)]
    first, last = HITS[0][2] / FPS, HITS[3][2] / FPS
    assert spans[0]["start_s"] < first < last < spans[0]["end_s"] < spans[1]["start_s"]
    bands = [(s.x0, s.x1) for s in timeline.layout.shapes if s.type == "rect"]
    assert bands == [(r["start_s"], r["end_s"]) for r in spans]  # every rally, results or not
    labels = timeline.layout.annotations
    assert [a.name for a in labels] == ["rally:1:1", "rally:1:2"] and all(a.captureevents for a in labels)
    assert [a.text for a in labels] == ["R1", "R2"]  # a reference CSV carries no score
    assert "rally 2" in labels[1].hovertext and "3 shots" in labels[1].hovertext and "click to zoom" in labels[1].hovertext
    # a click on a rally's label zooms to it (no seek); a click on a mark still plays its stroke
    assert analyze_tab.on_timeline_click(engine, rows, None, "rally:1:2:1712") == (gr.skip(), gr.skip(), "", "1:2")
    played = analyze_tab.on_timeline_click(engine, rows, None, "0:1712")
    assert json.loads(played[2])["t"] == 0.0 and played[3] == gr.skip()
    zoomed = analyze_tab.on_lanes(engine, rows, "player", "1:2")
    assert list(zoomed.layout.xaxis.range) == pytest.approx([spans[1]["start_s"] - 1.0, spans[1]["end_s"] + 1.0])
    assert list(analyze_tab.on_lanes(engine, rows, "player", "").layout.xaxis.range)[0] == 0
    picker = analyze_tab.on_rallies(engine, rows)
    assert picker.choices[0] == ("whole video", "") and [v for _, v in picker.choices[1:]] == ["1:1", "1:2"]
    assert analyze_tab.on_rallies(engine, []).choices == [("whole video", "")]


def test_a_question_about_rallies_answers_rallies_that_play_whole(engine, video_match):  # noqa: F811
    rows, table, timeline, note, _ = analyze_tab.on_ask(engine, "rallies of more than 3 shots", video_match, "player")
    assert [(r["kind"], r["rally"], r["shots"]) for r in rows] == [("rally", 1, 4)]
    assert table["headers"] == analyze_tab.RALLY_COLUMNS and table["value"][0][:2] == [1, 1]
    assert table["label"].startswith("Matching rallies") and note.endswith("”**: 1 matching rally (4 strokes).")
    first, last = HITS[0][2] / FPS, HITS[3][2] / FPS  # rally 1: its first and last hit
    assert rows[0]["start_s"] < first and rows[0]["end_s"] > last  # the whole rally, not one stroke
    looped = json.loads(analyze_tab.on_select(engine, rows, None, _select(0), 0.5, 1.0, True)[2])
    assert looped["t"] == pytest.approx(max(0.0, rows[0]["start_s"] - 0.5)) and looped["end"] == pytest.approx(rows[0]["end_s"] + 1.0)
    strokes = analyze_tab.on_ask(engine, "smashes in rallies of more than 3 shots", video_match, "player")
    assert strokes[1]["headers"] == analyze_tab.RESULT_COLUMNS and [r["ball_round"] for r in strokes[0]] == [1]
    path = engine.export_results_csv(rows, "rallies")
    assert path.read_text().splitlines()[0].startswith("match,set_no,rally,score_before,shots,won_by,ending")


def test_counting_questions_show_their_counts_as_a_table_and_say_what_was_read(engine):  # noqa: F811
    match_id = _add(engine)
    rows, _, _, note, counts = analyze_tab.on_ask(engine, "who hit more clears", match_id, "player")
    assert counts["visible"] and counts["headers"] == ["player", "strokes"]
    assert sorted(n for _, n in counts["value"]) == sorted(
        sum(r["player_name"] == p for r in rows) for p in {r["player_name"] for r in rows})
    assert sum(n for _, n in counts["value"]) == len(rows) > 0
    note = analyze_tab.on_ask(engine, "spicy smashes by Momtoa", match_id, "player")[3]
    assert "Read “momtoa” as Kento MOMOTA." in note and "Ignored: “spicy”." in note


def test_a_question_without_results_offers_the_near_misses_apart_and_they_play(engine, video_match):  # noqa: F811
    rows, table, timeline, note, _ = analyze_tab.on_ask(engine, "when does the bottom player play a clear?",
                                                        video_match, "player")
    assert "”**: No clears by the bottom player. The event does not occur." in note  # in a coach's words
    assert rows and f"Below: the {len(rows)} closest strokes, which do not match" in note
    assert table["label"].startswith("Close to the question, not matching it")
    assert timeline.layout.title.text == "Close strokes (not matches)"
    assert "upper player hits a clear in the backcourt" in [r["caption"] for r in rows]
    assert all(r["stroke"] != "clear" or r["side"] != "bottom" for r in rows)  # none is an answer
    seek = json.loads(analyze_tab.on_select(engine, rows, None, _select(0))[2])  # a click watches it
    assert seek["t"] == pytest.approx(max(0.0, rows[0]["start_s"] - 0.5))
    plain = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")
    assert plain[1]["label"].startswith("Matching strokes") and plain[2].layout.title.text is None


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_refused_with_the_reason_and_the_results_kept(engine, question):  # noqa: F811
    out = bind(analyze_tab.on_ask, engine)(question, _add(engine), "player")
    assert out[:3] == (gr.skip(),) * 3 and out[4] == gr.skip()  # rows, table, timeline and counts stay
    assert out[3].startswith("⚠") and "type a question" in out[3] and "unchanged" in out[3]


def test_a_result_click_seeks_the_player_and_swaps_the_video_only_when_needed(engine, video_match):  # noqa: F811
    rows = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")[0]
    video, name, payload = analyze_tab.on_select(engine, rows, None, _select(1))
    seek = json.loads(payload)
    assert video.endswith(name) and seek["src"] == name
    assert seek["t"] == pytest.approx(rows[1]["start_s"] - 0.5)  # a little before the stroke's window
    same = analyze_tab.on_select(engine, rows, name, _select(2))
    assert same[0] == gr.skip() and json.loads(same[2])["t"] == pytest.approx(rows[2]["start_s"] - 0.5)
    # a timeline mark passes "row:time"; the first stroke starts within the lead, so seek to 0
    assert json.loads(analyze_tab.on_pick(engine, rows, name, "0:1712")[2])["t"] == 0.0
    assert analyze_tab.on_pick(engine, rows, name, "") == (gr.skip(),) * 3
    assert analyze_tab.jump(engine, rows, 3, name) == (gr.skip(),) * 3
    # the coach's lead-in, and a looped clip that ends its lead-out after the stroke's window
    looped = json.loads(analyze_tab.on_select(engine, rows, name, _select(2), 2.0, 1.0, True)[2])
    assert looped["t"] == pytest.approx(rows[2]["start_s"] - 2.0) and looped["end"] == pytest.approx(rows[2]["end_s"] + 1.0)
    plain = json.loads(analyze_tab.on_select(engine, rows, name, _select(2), None, None, False)[2])
    assert plain["t"] == pytest.approx(rows[2]["start_s"] - 0.5) and plain["end"] is None  # blank: the default
    segs = json.loads(analyze_tab.on_play_all(engine, rows, name, 1.0, 99)[2])["segments"]
    assert segs[-1][:2] == pytest.approx([rows[2]["start_s"] - 1.0, rows[2]["end_s"] + 10.0])  # at most 10 s
    assert analyze_tab.jump(engine, [], 0, name) == (gr.skip(),) * 3


def test_a_result_without_a_video_says_so(engine):  # noqa: F811
    rows = analyze_tab.on_ask(engine, "Find every clear", _add(engine), "player")[0]
    assert rows
    with pytest.raises(gr.Error, match="This stroke's match has no video."):
        analyze_tab.on_select(engine, rows, None, _select(0))
    with pytest.raises(gr.Error, match="These results have no video."):
        analyze_tab.on_play_all(engine, rows, None)


def _second_match(engine, index_video) -> int:  # noqa: F811
    """Another match with a video of its own (a copy of the first one's, under another name)."""
    return _add_video_match(engine, index_video, "w", "second")[0].value


def test_play_all_plays_every_video_set_after_set_in_time_order(engine, video_match, index_video):  # noqa: F811
    other = _second_match(engine, index_video)
    first = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")[0]
    second = analyze_tab.on_ask(engine, "Which strokes are smashes?", other, "player")[0]
    missing = {**first[0], "set_no": 2, "start_s": 0.0, "end_s": 0.6}  # a set without a video: left out
    rows = [*reversed(second), missing, *reversed(first)]
    video, name, payload = analyze_tab.on_play_all(engine, rows, None)
    segments = json.loads(payload)["segments"]
    videos = [engine.match_video(m)[0] for m in (video_match, other)]
    assert video == str(videos[0]) and name == videos[0].name  # the player starts on the first clip's video
    assert [s[2] for s in segments] == [videos[0].name] * 3 + [videos[1].name] * 3
    assert segments[3][3] == "/gradio_api/file=" + quote(str(videos[1]))  # the page loads the next video itself
    assert [s[0] for s in segments] == pytest.approx([max(0.0, r["start_s"] - 0.5) for r in first + second])
    assert [s[1] for s in segments] == pytest.approx([r["end_s"] + 0.2 for r in first + second])
    assert analyze_tab.on_play_all(engine, rows, name)[0] == gr.skip()
    # a playlist plays in its own order
    listed = json.loads(analyze_tab.on_play_all(engine, rows, name, in_order=True)[2])["segments"]
    assert [s[2] for s in listed] == [videos[1].name] * 3 + [videos[0].name] * 3
    with pytest.raises(gr.Error, match="Ask a question first"):
        analyze_tab.on_play_all(engine, [], name)


def test_exports_write_the_results(engine, video_match):  # noqa: F811
    rows = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")[0]
    shown = analyze_tab.on_export_csv(engine, rows)
    assert shown["visible"]  # the download box appears with its file
    csv = engine.workspace.root / shown["value"]
    assert csv.is_file() and len(csv.read_text().splitlines()) == 1 + len(rows)
    mp4 = engine.workspace.root / analyze_tab.on_export_mp4(engine, rows[:2])["value"]
    assert mp4.is_file() and mp4.stat().st_size > 0
    for export in (analyze_tab.on_export_csv, analyze_tab.on_export_mp4):
        with pytest.raises(gr.Error, match="No results to export."):
            export(engine, [])


def test_a_refused_action_says_why_next_to_its_control_and_keeps_the_page(engine, video_match):  # noqa: F811
    """No Error badges over the picker, the player or the playlist: the reason in the line by the
    control, every other output as it was, and no seek payload that would replay the last clip."""
    from ui.common import said

    add = bind(said(analyze_tab.on_add, 2, note=1), engine)
    picker, status = add(None, None, "", "uploads/missing.csv", "m")
    assert picker == gr.skip() and status.startswith("⚠ ") and "no such annotation path" in status
    play = bind(said(analyze_tab.on_play_all, 3, blank=(2,)), engine)
    assert play([], None) == (gr.skip(), gr.skip(), "", "⚠ Ask a question first: Play all steps through its results.")
    rows = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")[0]
    video, name, payload, note = play(rows, None)
    assert json.loads(payload)["segments"] and note == ""  # done: an earlier warning is cleared
    up = bind(said(analyze_tab.on_playlist_up, 4, note=3), engine)
    assert up([], None) == (gr.skip(), gr.skip(), gr.skip(), "⚠ Pick a clip of the playlist first (click its row).")
    save = bind(said(analyze_tab.on_playlist_save, 2, note=1), engine)
    assert save([], "x")[1].startswith("⚠ the playlist is empty")
    assert engine.playlists() == []


def test_a_playlist_is_built_from_answers_reordered_saved_opened_and_exported(engine, video_match, index_video):  # noqa: F811
    """The coach's playlist: results of two questions, one clip moved up and one removed, saved
    under a name and opened again in a fresh page, played in its order, exported three ways."""
    smashes = analyze_tab.on_ask(engine, "Which strokes are smashes?", video_match, "player")[0]
    lifts = analyze_tab.on_ask(engine, "lobs", video_match, "player")[0]
    items, table, picked, note = analyze_tab.on_playlist_add(engine, [], smashes)
    items, table, picked, note = analyze_tab.on_playlist_add(engine, items, [*lifts, smashes[0]])
    assert note == f"Added {len(lifts)} clip{'' if len(lifts) == 1 else 's'}; the playlist holds {3 + len(lifts)}."
    assert [r[0] for r in table] == list(range(1, 4 + len(lifts))) and table[0][5] == smashes[0]["caption"]
    last = len(items) - 1
    picked, note, video, name, seek = analyze_tab.on_playlist_pick(engine, items, None, _select(last))
    assert picked == last and json.loads(seek)["t"] == pytest.approx(max(0.0, items[last]["start_s"] - 0.5))
    items, table, picked, note = analyze_tab.on_playlist_up(engine, items, picked)
    assert picked == last - 1 and items[last - 1]["stroke"] == "lob" and note == f"Clip {last + 1} is now clip {last}."
    items, table, picked, note = analyze_tab.on_playlist_remove(engine, items, 0)
    expected = [*smashes[1:], *lifts]
    expected.insert(len(expected) - 2, expected.pop())  # the last clip, one place up
    assert picked is None and [r["start_s"] for r in items] == [r["start_s"] for r in expected]
    with pytest.raises(gr.Error, match="Pick a clip"):
        analyze_tab.on_playlist_down(engine, items, None)
    saved, note = analyze_tab.on_playlist_save(engine, items, "late smashes")
    assert saved.value == "late_smashes" and ("late_smashes", "late_smashes") in saved.choices
    with pytest.raises(gr.Error, match="give the playlist a name"):
        bind(analyze_tab.on_playlist_save, engine)(items, "  ")
    fresh = Engine(engine.workspace.root, demo_match=engine.workspace.root / "no-demo")  # the next day's session
    opened, table2, _, note, name_box = analyze_tab.on_playlist_open(fresh, "late_smashes")
    assert opened == items and table2 == table and name_box == "late_smashes"
    segments = json.loads(analyze_tab.on_playlist_play(fresh, opened, None)[2])["segments"]
    assert [s[0] for s in segments] == pytest.approx([max(0.0, r["start_s"] - 0.5) for r in items])  # its own order
    csv = Path(analyze_tab.on_playlist_csv(fresh, opened, "late_smashes")["value"])
    assert csv.name == "playlist-late_smashes.csv" and len(csv.read_text().splitlines()) == 1 + len(items)
    edl = Path(analyze_tab.on_playlist_edl(fresh, opened, "late_smashes")["value"]).read_text()
    assert edl.count(" AX ") == len(items) and f"FROM CLIP NAME: {Path(items[0]['video']).name}" in edl
    mp4 = Path(analyze_tab.on_playlist_mp4(fresh, opened[:2], "late_smashes")["value"])
    assert mp4.suffix == ".mp4" and mp4.stat().st_size > 0
    for export in (analyze_tab.on_playlist_csv, analyze_tab.on_playlist_edl, analyze_tab.on_playlist_play):
        with pytest.raises(gr.Error, match="The playlist is empty"):
            export(fresh, [], "x")


# ---------------------------------------------------------------- Strokes


def test_a_match_sets_the_filters_and_lists_every_stroke(engine):  # noqa: F811
    match_id = _add(engine)
    *filters, rows, table, count = strokes_tab.on_match(engine, match_id)
    assert len(filters) == len(strokes_tab.FILTERS) and all(f.value == "all" for f in filters)
    by_key = dict(zip(strokes_tab.FILTERS, filters))
    assert by_key["side"].choices == [("all", "all"), ("bottom", "bottom"), ("upper", "upper")]
    assert all(label.startswith(f"{v}: ") for label, v in by_key["zone"].choices[1:])  # "7: at the net"
    assert len(rows) == len(table) == 29 and count == "29 strokes"
    values = ["all"] * len(strokes_tab.FILTERS)
    values[strokes_tab.FILTERS.index("stroke")] = "clear"
    values[strokes_tab.FILTERS.index("side")] = "bottom"
    rows, table, count = strokes_tab.load_rows(engine, match_id, *values)
    assert rows and all(r["stroke"] == "clear" and r["side"] == "bottom" for r in rows)
    assert count == f"{len(rows)} strokes" and len(rows) < 29
    assert strokes_tab.load_rows(engine, None, *values) == ([], [], "0 strokes")


def test_a_stroke_click_shows_where_it_is_its_caption_and_clip(engine, video_match):  # noqa: F811
    rows = strokes_tab.load_rows(engine, video_match)[0]
    sid, where, caption, clip = strokes_tab.on_select(engine, rows, _select(2))
    assert sid == rows[2]["id"] and where == "**Set 1, rally 1, stroke 3 — 1.20 s**"
    assert caption == "upper player hits a clear in the backcourt"
    assert clip.endswith(".mp4") and (engine.workspace.root / clip).is_file()
    no_video = strokes_tab.load_rows(engine, _add(engine))[0]
    assert strokes_tab.on_select(engine, no_video, _select(0))[3] is None  # the caption can still be edited


def test_a_caption_correction_is_saved_shown_reverted_and_exported(engine):  # noqa: F811
    match_id = _add(engine)
    rows = strokes_tab.load_rows(engine, match_id)[0]
    sid, original = rows[3]["id"], rows[3]["caption"]
    new = "bottom player hits a high defensive clear from the right backcourt"
    rows, table, count = strokes_tab.on_save(engine, sid, new, match_id)
    assert count == "29 strokes"
    assert next(r["caption"] for r in rows if r["id"] == sid) == new
    assert next(t[9] for t in table if t[0] == sid) == new + " ✎"  # marked as corrected
    assert next(r["caption"] for r in engine.strokes(match_id) if r["id"] == sid) == new  # in the index
    path = engine.workspace.root / strokes_tab.on_export(engine, match_id)
    assert new in path.read_text()
    *_, caption = strokes_tab.on_revert(engine, sid, match_id)
    assert caption == original
    assert next(r["caption"] for r in engine.strokes(match_id) if r["id"] == sid) == original
    for handler, args in ((strokes_tab.on_save, (None, new, match_id)), (strokes_tab.on_revert, (None, match_id))):
        with pytest.raises(gr.Error, match="Click a stroke first."):
            handler(engine, *args)


def test_the_strokes_tab_shows_confidences_and_lists_the_uncertain_detections_to_review(engine):  # noqa: F811
    write_detected_csv(engine.workspace.uploads / "det" / "set1.csv")
    match_id = engine.add_match("uploads/det/set1.csv")
    *filters, rows, table, count = strokes_tab.on_match(engine, match_id)
    col = strokes_tab.COLUMNS.index("confidence")
    assert [t[col] for t in table] == ["0.90", "0.30 ⚠", "0.75", "0.50", "0.12 ⚠", "0.66"]
    assert count == "6 strokes, 2 uncertain"
    values = ["all"] * len(strokes_tab.FILTERS)
    rows, table, count = strokes_tab.load_rows(engine, match_id, *values, True)
    assert [r["frame"] for r in rows] == [150, 450] and count == "2 strokes, 2 uncertain"
    assert strokes_tab.on_match(engine, match_id, True)[-3:] == (rows, table, count)  # the box stays ticked
    sid, where, *_ = strokes_tab.on_select(engine, rows, _select(0))
    assert where.endswith("(uncertain detection: confidence 0.30)**")
    # reviewed: the move makes it a person's hit (confidence 1), so it leaves the list
    rows, table, count, sid, note = strokes_tab.on_move(engine, "+1", sid, match_id, *values, True)
    assert [r["frame"] for r in rows] == [450] and count == "1 strokes, 1 uncertain"
    assert len(strokes_tab.load_rows(engine, match_id, *values, False)[0]) == 6


def test_answers_carry_confidences_to_the_results_table_and_timeline(engine):  # noqa: F811
    write_detected_csv(engine.workspace.uploads / "det" / "set1.csv")
    match_id = engine.add_match("uploads/det/set1.csv")
    rows, table, timeline, note, _ = analyze_tab.on_ask(engine, "when does the upper player hit?", match_id, "player")
    assert sorted((r["frame"], r["confidence"]) for r in rows) == [(150, 0.3), (400, 0.5), (500, 0.66)]
    assert [t[-1] for t in table["value"]] == [("0.30 ⚠" if r["frame"] == 150 else f"{r['confidence']:.2f}") for r in rows]
    hollow = [int(c[2]) for t in timeline.data if t.mode == "markers"
              for c, sym in zip(t.customdata, t.marker.symbol) if sym == "diamond-open"]
    assert [rows[i]["frame"] for i in hollow] == [150]


# ---------------------------------------------------------------- Model


def test_the_model_tab_loads_a_model_describes_it_and_captions(engine, tiny_base, index_video):  # noqa: F811
    assert model_tab.memory_text(engine) == ""
    with pytest.raises(gr.Error, match="no model is loaded"):
        bind(model_tab.on_caption, engine)(str(index_video), 7)
    shutil.copytree(tiny_base, engine.workspace.root / "models" / "tiny")
    status, memory = model_tab.on_load(engine, "models/tiny", "fp32", "cpu")
    assert status == engine.describe() and "models/tiny" in status and "fp32 on cpu" in status
    mib = engine.memory()["weights_mib"]
    assert mib > 0 and memory == f"Weights: **{mib:.1f} MiB** on cpu"
    caption = model_tab.on_caption(engine, str(index_video), 7.0)  # gr.Number gives a float
    assert caption == engine.caption(index_video, [7])[7]
    with pytest.raises(gr.Error, match="Upload a video first."):
        model_tab.on_caption(engine, None, 7)
    with pytest.raises(gr.Error, match="give a model"):
        bind(model_tab.on_load, engine)("  ", "fp32", "cpu")


# ---------------------------------------------------------------- Stats


def test_stats_of_the_whole_match_and_of_the_results(engine):  # noqa: F811
    match_id = _add(engine)
    placed = [r for r in engine.court_rows(engine.strokes(match_id)) if r.get("hit_m") or r.get("landing_m")]
    note, counts, court = stats_tab.on_show(engine, stats_tab.SCOPES[0], match_id, None)
    assert note == f"29 strokes of the whole match; {len(placed)} with court positions." and placed
    assert sum(sum(bar.y) for bar in counts.data) == 29
    hits = [t for t in court.data if getattr(t, "mode", None) == "markers" and t.xaxis == "x"]
    assert len(hits[0].x) == sum(1 for r in placed if r.get("hit_m"))

    results = analyze_tab.on_ask(engine, "Find every clear", match_id, "player")[0]
    note, counts, _ = stats_tab.on_show(engine, stats_tab.SCOPES[1], match_id, results)
    assert note.startswith(f"{len(results)} strokes of the current question's results;")
    assert {bar.x for bar in counts.data} == {("clear",)}
    assert stats_tab.on_show(engine, stats_tab.SCOPES[1], match_id, None)[0].startswith("0 strokes")
    assert stats_tab.on_show(engine, stats_tab.SCOPES[0], None, None)[0] == \
        "0 strokes of the whole match; 0 with court positions."


# ---------------------------------------------------------------- Train

# A stand-in for `python -m train.stageN`: it logs, waits for a "go" file in its run folder (so a
# test sees it running), writes two metrics rows and saves the workspace's ADAPTERS (else a bare manifest).
RECIPE = ("import shutil\nprint('training', flush=True)\n"
          "while not (out / 'go').exists(): time.sleep(0.05)\n"
          "with open(out / 'metrics.jsonl', 'a') as f:\n"
          "    f.write(json.dumps({'step': 1, 'epoch': 0.5, 'loss': 3.0}) + '\\n')\n"
          "    f.write(json.dumps({'step': 2, 'epoch': 1.0, 'loss': 2.0, 'val_cider': 0.1}) + '\\n')\n"
          "adapters = out.parent.parent / 'ADAPTERS'\n"
          "if adapters.is_dir(): shutil.copytree(adapters, out / 'final')\n"
          "else: (out / 'final').mkdir(); (out / 'final' / 'manifest.json').write_text('{}')\n")


def _fields(**changes) -> dict:
    """on_start's inputs as the tab starts them (stage 1, first preset), for a tiny 2-step run."""
    s1, lora = option_defaults(1), LoraSettings()
    fields = dict(stage=1, preset=train_tab.PRESETS[0], name="smoke", qparts=["cross_attn"], qr=lora.qformer_r,
                  qalpha=lora.qformer_alpha, llm_part=train_tab.NO_LLM, llm_r=s1["llm_r"], data="data/d", init=None,
                  negatives=0, epochs=s1["epochs"], lr=s1["lr"], max_steps=2, base="", tiny=True)
    return {**fields, **changes}


@pytest.fixture
def trainer(engine, tmp_path):  # noqa: F811
    """The engine with a training data folder, and runs started by the stand-in recipe."""
    ws = engine.workspace
    (ws.data / "d").mkdir(parents=True)
    (ws.data / "d" / "train.json").write_text("[]")
    engine.runner = Runner(ws.runs, python=_fake_recipe(tmp_path, RECIPE))
    yield engine
    engine.runner.shutdown()  # a run a failed test left waiting


def _finish(engine, name: str) -> None:
    (engine.workspace.runs / name / "go").touch()
    assert _wait(lambda: engine.runner.status(name).state != "running")


def _request(engine, name: str) -> dict:
    return yaml.safe_load((engine.workspace.runs / name / REQUEST_FILE).read_text())


def test_the_stage_sets_its_own_defaults():
    assert train_tab.on_stage(1) == (Stage1Config.lr, train_tab.NO_LLM)
    assert train_tab.on_stage("2") == (Stage2Config.lr, Stage2Config.llm_part)  # a radio may give text


def test_refused_runs_say_why_and_start_no_process(trainer):
    start = bind(train_tab.on_start, trainer)
    with pytest.raises(gr.Error, match="stage 2 starts from a stage-1 run: choose one"):
        start(**_fields(stage=2, negatives=0.4))
    with pytest.raises(gr.Error, match="cannot start a stage-1 run: .*epochs must be > 0"):
        start(**_fields(epochs=0))
    with pytest.raises(gr.Error, match="Q-Former"):
        start(**_fields(preset="custom", qparts=[]))
    with pytest.raises(gr.Error, match="holds no train.json"):
        start(**_fields(data="uploads"))
    assert list(trainer.workspace.runs.iterdir()) == [] and trainer.runner.active() is None
    assert train_tab.on_refresh(trainer)[0] == []


def test_a_started_run_is_polled_until_it_finishes_then_listed(trainer):
    name, timer, note = train_tab.on_start(trainer, **_fields(preset="3 (r=4)"))
    assert name.startswith("stage1-") and name.endswith("-smoke")
    assert timer.active is True and note == f"Started **{name}**."
    request = _request(trainer, name)  # the fields as the recipe reads them
    assert (request["experiment"], request["max_steps"], request["tiny"], request["base"]) == (3, 2, True, None)
    assert request["data"] == str(trainer.workspace.data / "d")

    *skipped, timer = train_tab.on_tick(trainer, None)  # no run started yet
    assert skipped == [gr.skip()] * 6 and timer.active is False
    assert _wait(lambda: "training" in trainer.runner.log_tail(name))
    summary, bar, log, _, table, pick, timer = train_tab.on_tick(trainer, name)
    assert summary.startswith(f"**{name}**: running") and "training" in log
    assert table == gr.skip() and pick == gr.skip() and timer.active is True  # polling goes on
    with pytest.raises(gr.Error, match="still going; stop it first"):
        bind(train_tab.on_start, trainer)(**_fields(name="second"))

    _finish(trainer, name)
    summary, bar, log, figure, table, pick, timer = train_tab.on_tick(trainer, name)
    assert summary == f"**{name}**: finished — step 2/2, loss 2, val_cider 0.1"
    assert "100%" in bar and "finished" in bar
    assert {t.name for t in figure.data} == {"loss", "val_cider"}
    started = trainer.runner.status(name).started
    assert table == [[name, "1", "finished", 2, 2.0, "val_cider 0.1", started]]
    assert pick.value == name and pick.choices == [(name, name)] and timer.active is False  # polling stops

    rows, run_pick, init = train_tab.on_refresh(trainer)
    assert rows == table and run_pick.value == name and init.choices == [(name, name)]
    assert train_tab.on_run_pick(trainer, name) == train_tab.run_view(trainer, trainer.runner.status(name))
    assert train_tab.on_run_pick(trainer, name)[0] == summary
    assert train_tab.on_run_pick(trainer, None) == (gr.skip(),) * 3


def test_a_running_run_stops(trainer):
    name = train_tab.on_start(trainer, **_fields())[0]
    assert train_tab.on_stop(trainer, name) == f"Stopped {name}."
    assert _wait(lambda: trainer.runner.status(name).state == "stopped")
    assert train_tab.on_tick(trainer, name)[-1].active is False
    assert train_tab.on_stop(trainer, name) == "No run is going."


def test_a_finished_run_is_used_and_stage_2_starts_from_it(trainer, tiny_base):
    ws = trainer.workspace
    shutil.copytree(tiny_base, ws.root / "models" / "tiny")
    model = build_model(ModelSettings(base=str(ws.root / "models" / "tiny"), num_frames=4,
                                      lora=LoraSettings.experiment(1)), stage=1)
    save_adapters(model, ws.root / "ADAPTERS")
    with pytest.raises(gr.Error, match="Choose a run."):
        train_tab.on_use(trainer, None)
    first = train_tab.on_start(trainer, **_fields())[0]
    with pytest.raises(gr.Error, match="no saved adapters yet"):
        bind(train_tab.on_use, trainer)(first)
    _finish(trainer, first)
    assert train_tab.on_use(trainer, first) == f"Using **{first}**."
    assert trainer.source == str(ws.runs / first / "final")

    second = train_tab.on_start(trainer, **_fields(stage=2, init=first, negatives=0.4, llm_part="attn",
                                                   lr=Stage2Config.lr, tiny=False))[0]
    request = _request(trainer, second)
    assert request["init"] == str(ws.runs / first) and request["negative_share"] == 0.4
    assert request["llm_part"] == "attn" and request["base"] == str(ws.root / "models" / "tiny")  # the loaded base
    _finish(trainer, second)
    assert [row[:3] for row in train_tab.on_refresh(trainer)[0]] == [[second, "2", "finished"],
                                                                     [first, "1", "finished"]]


def test_fine_tuning_the_loaded_model_on_a_match_runs_to_the_end_and_recaptions_it(engine, video_match, tiny_base):  # noqa: F811
    """The real stage-1 recipe, from the loaded model's adapters, on clips cut from the match video."""
    with pytest.raises(gr.Error, match="load a model"):
        bind(train_tab.on_finetune, engine)(video_match, 2)
    model = build_model(ModelSettings(base=str(tiny_base), num_frames=4, lora=LoraSettings.experiment(1)), stage=1)
    save_adapters(model, engine.workspace.root / "loaded")
    engine.load(str(engine.workspace.root / "loaded"), trusted=True)
    stroke = engine.strokes(video_match)[0]
    engine.set_caption(stroke["id"], "upper player hits a drop in the backcourt")
    run, timer, note = train_tab.on_finetune(engine, video_match, 2)
    assert timer.active and note.endswith("2 steps on 7 strokes (1 corrected, 6 annotated captions).")
    data = engine.workspace.data / "demo-captions"
    items = json.loads((data / "train.json").read_text())
    assert len(items) == 7 and all((data / it["image"]).is_file() for it in items)
    assert "upper player hits a drop in the backcourt" in [it["caption"] for it in items]
    request = _request(engine, run)
    assert request["init"] == str(engine.workspace.root / "loaded") and request["max_steps"] == 2
    assert _wait(lambda: engine.runner.status(run).state != "running", timeout=300), engine.runner.log_tail(run)
    summary = train_tab.on_tick(engine, run)[0]
    assert summary.startswith(f"**{run}**: finished — step 2/2") and "not evaluated" in summary, summary
    assert "nan" not in summary and train_tab.runs_table(engine.runner.list_runs())[0][5] == "not evaluated"
    note = train_tab.on_use(engine, run, video_match)
    assert note == f"Using **{run}**. Captioned the 7 strokes of this match with it (Strokes tab)."
    assert engine.model.settings.num_frames == 4 and engine.model.stage == 1  # the loaded model's frame count
    assert all(s["model_caption"] for s in engine.strokes(video_match))


def test_fine_tuning_a_question_answering_model_on_a_match_trains_its_own_llm_lora(engine, video_match, tiny_base):  # noqa: F811
    """The real stage-2 recipe from a loaded stage-2 model (as the shipped demo is): questions about
    the match's rallies made from its captions, the model's LLM LoRA trained on (its rank kept)."""
    from safetensors.torch import load_file

    lora = LoraSettings(qformer_parts=("cross_attn",), qformer_r=2, llm_part="attn", llm_r=2, llm_alpha=4)
    model = build_model(ModelSettings(base=str(tiny_base), num_frames=4, lora=lora), stage=2)
    save_adapters(model, engine.workspace.root / "qa-model")
    engine.load(str(engine.workspace.root / "qa-model"), trusted=True)
    run, timer, note = train_tab.on_finetune_questions(engine, video_match, 2)
    data = engine.workspace.data / "demo-captions"
    questions = json.loads((data / "qa_train.json").read_text())
    assert note.endswith(f"2 steps on {len(questions)} questions about 7 strokes (0 corrected, 7 annotated captions).")
    assert {tuple(q["image"]) for q in questions} >= {tuple(f"clips/demo_1_{f}.mp4" for f in (10, 20, 30, 40))}
    assert all((data / p).is_file() for q in questions for p in q["image"])  # the rally's clips, in order
    assert any(q["is_impossible"] for q in questions) and any(q["indices"] for q in questions)
    assert _wait(lambda: engine.runner.status(run).state != "running", timeout=300), engine.runner.log_tail(run)
    status = engine.runner.status(run)
    assert status.state == "finished", engine.runner.log_tail(run)
    out = engine.runner.adapters(run)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == 2 and (manifest["lora"]["llm_part"], manifest["lora"]["llm_r"]) == ("attn", 2)
    before = load_file(str(engine.workspace.root / "qa-model" / "adapters.safetensors"))
    after = load_file(str(out / "adapters.safetensors"))
    llm = [k for k in before if "lora" in k and "qformer" not in k]
    assert llm and any(not (before[k] == after[k]).all() for k in llm)  # the LLM LoRA trained
    # a base without the stroke captioner cannot be fine-tuned on questions
    engine.load(str(tiny_base), trusted=True)
    with pytest.raises(gr.Error, match="fine-tune the captions first"):
        bind(train_tab.on_finetune_questions, engine)(video_match, 2)


def test_the_train_tab_wires_each_handler_with_its_inputs(engine):  # noqa: F811
    """Each Train event calls its handler with as many inputs as the handler takes after the engine."""
    fns = list(build_app(engine).fns.values())

    def calling(handler):  # the events whose callback is bind(handler) or bind(said(handler, ...))
        inner = (getattr(getattr(f.fn, "__wrapped__", None), "func", None) for f in fns)
        return [f for f, fn in zip(fns, inner) if fn is handler or getattr(fn, "__wrapped__", None) is handler]

    for handler, outputs, events in ((train_tab.on_start, 3, 1), (train_tab.on_tick, 7, 1), (train_tab.on_stop, 1, 1),
                                     (train_tab.on_refresh, 3, 2), (train_tab.on_run_pick, 3, 1),
                                     (train_tab.on_use, 1, 1), (train_tab.on_finetune, 3, 1),
                                     (train_tab.on_finetune_questions, 3, 1)):
        assert len(calling(handler)) == events, handler.__name__  # on_refresh: the button and the page load
        takes = [p for p in inspect.signature(handler).parameters if p != "progress"]  # Gradio fills progress
        for fn in calling(handler):
            assert len(fn.inputs) == len(takes) - 1 and len(fn.outputs) == outputs, handler.__name__
    stage = [f for f in fns if f.fn is train_tab.on_stage]
    assert len(stage) == 1 and len(stage[0].inputs) == 1 and len(stage[0].outputs) == 2
