"""Analyze tab: pick or add a match (a video alone: its strokes are detected), watch it, ask a question, see the strokes on a table and a
timeline (uncertain detections hollow), jump to each one, play them all, export them."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from core import playlist
from core.engine import SEEK_LEAD_S, Answer, Engine
from ui.common import (EXPECTED, LEAD_OUT_S, MAX_LEAD_S, PLAY_ALL_JS, PLAYER_KEYS_JS, PLAYHEAD_JS, SEEK_JS,
                       SPEED_JS, TIMELINE_CLICK_JS, VIDEO_ID, bind, confidence_cell, play_all_payload, progress_callback, progress_html,
                       row_index, said, seek_payload)
from ui.figures import timeline_figure

EXAMPLES = [
    "when does the bottom player smash from the backcourt?",
    "errors hit out",
    "Kento MOMOTA's errors",
    "backhand strokes by Kento MOMOTA",
    "Which strokes are net shots?",
    "When does the upper player play a clear?",
    "Find every serve",
    "When does the bottom player lob from the net?",
]
RESULT_COLUMNS = ["set", "rally", "#", "time s", "player", "type", "caption", "found", "conf."]
RESULT_WIDTHS = ["7%", "9%", "6%", "9%", "15%", "10%", "24%", "11%", "9%"]
# how a result was found, in a coach's words: the question's fields matched exactly, or a caption
# close in meaning, or the loaded model's pick
FOUND = {"structured": "exact", "semantic": "similar", "model": "model"}
RALLY_COLUMNS = ["set", "rally", "score", "shots", "won by", "how it ended", "time s"]
RALLY_WIDTHS = ["6%", "7%", "9%", "8%", "22%", "38%", "10%"]
SPEEDS = ["0.25", "0.5", "1", "1.5", "2"]
KEYS_HINT = "Keys: space play/pause · ← → , . frame · shift+← → 1 s · J back 1 s · K pause · L play/faster"


def result_table(rows: list[dict]) -> list[list]:
    return [[r.get("set_no"), r.get("rally"), r.get("ball_round"), round(float(r.get("time_s") or 0.0), 2),
             r.get("player_name") or r.get("side") or "", r.get("stroke") or "", r.get("caption") or "",
             _found(r.get("source")), confidence_cell(r.get("confidence"))] for r in rows]


def _found(source: str | None) -> str:
    return " + ".join(FOUND.get(p, p) for p in str(source).split("+")) if source else ""


def rally_table(rows: list[dict]) -> list[list]:
    return [[r.get("set_no"), r.get("rally"), r.get("score_before") or "", r.get("shots"), r.get("won_by") or "",
             r.get("ending") or "", round(float(r.get("start_s") or 0.0), 2)] for r in rows]


def _table(rows: list[dict], rallies: bool, label: str = "Matching strokes (click a row to play it)") -> dict:
    """The results table's update: strokes (under `label`), or rallies when the answer is rallies."""
    if rallies:
        return gr.update(value=rally_table(rows), headers=RALLY_COLUMNS, column_widths=RALLY_WIDTHS,
                         label="Matching rallies (click a row to play it)")
    return gr.update(value=result_table(rows), headers=RESULT_COLUMNS, column_widths=RESULT_WIDTHS, label=label)


def _counts(ans) -> dict:
    """The counts table ("who hit more clears", "most common serve"), shown only when asked."""
    if not ans.counts:
        return gr.update(value=[], visible=False)
    return gr.update(value=[[k, n] for k, n in ans.counts], headers=[ans.count_by, "strokes"], visible=True)


# ---------------------------------------------------------------- handlers: engine + input values -> outputs


def on_match(engine: Engine, match_id: int | None) -> tuple:
    """A newly picked match: (match, video, video name, frame rate, results, table, timeline,
    message, counts), results cleared."""
    if match_id is None:
        return None, None, None, "", [], _table([], False), timeline_figure([]), "", _counts(Answer(""))
    path, set_no = engine.match_video(match_id)
    return (match_id, str(path) if path else None, path.name if path else None,
            _fps_text(engine, match_id, set_no) if path else "",
            [], _table([], False), timeline_figure([]), "" if path else "This match has no video; questions still work.",
            _counts(Answer("")))


def on_demo_tick(engine: Engine, picked: int | None = None) -> tuple:
    """While the demo match is indexed in the background: (progress line, picker, timer); once it
    is done, the picker shows it (which loads its video) unless the coach has picked a match, and
    the timer stops."""
    demo = engine.demo
    if demo.running:
        share = demo.done / demo.total if demo.total else None
        note = progress_html(share, "Loading the model…" if demo.what == "loading the model"
                             else f"Preparing the demo match ({demo.what or 'starting'})…")
        return gr.HTML(note, visible=True), gr.skip(), gr.skip()
    choices = engine.match_choices()
    note = f"⚠ The demo match could not be indexed: {demo.error}" if demo.error else ""
    picker = gr.skip() if picked is not None else gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)
    return gr.HTML(note, visible=bool(note)), picker, gr.Timer(active=False)


def _fps_text(engine: Engine, match_id: int | None, set_no: int | None = None) -> str:
    """The frame rate of the video the player shows, for the frame-step keys ("" when unknown)."""
    fps = engine.video_fps(match_id, set_no)
    return f"{fps:g}" if fps else ""


def on_refresh(engine: Engine) -> gr.Dropdown:
    """The match picker with the index's current matches."""
    return gr.Dropdown(choices=engine.match_choices())


def _strokes(n: int) -> str:
    return f"{n} stroke{'' if n == 1 else 's'}"


FIRST_SERVER = [("not known", ""), ("bottom", "bottom"), ("upper", "upper")]


def on_add(engine: Engine, vfile: str | None, cfile: str | None, vpath: str, cpath: str, mname: str,
           progress: gr.Progress = gr.Progress(), bottom: str = "", upper: str = "",
           first_server: str = "", folder: str | None = None) -> tuple[gr.Dropdown, str]:
    """Index an uploaded (or workspace) match: (the picker set to it, a status line). A video without
    annotations is detected first; `bottom` and `upper` name the players starting at those ends. A
    ShuttleSet folder (a zip upload, or a workspace folder in the annotation path) adds all its sets
    with match.csv's names and homography.csv's court. (Gradio puts its progress tracker at
    `progress`'s place and the inputs around it.)"""
    if folder or (cpath and engine.workspace.resolve(cpath, what="annotation path").is_dir()):
        ids = engine.add_shuttleset(folder or cpath, progress=progress_callback(progress))
        added = [m for m in engine.matches() if m["id"] in ids]
        names = "; ".join(f"{m['name'].replace('_', ' ')} ({_strokes(m['strokes'])})" for m in added)
        return gr.Dropdown(choices=engine.match_choices(), value=ids[0]), f"Added {names}."
    vid = engine.save_upload(vfile, mname) if vfile else (vpath or None)
    ann = engine.save_upload(cfile, mname) if cfile else (cpath or None)
    names = tuple(" ".join(str(n or "").split()) for n in (bottom, upper))
    match_id = engine.add_match(str(ann) if ann else None, str(vid) if vid else None,
                                progress=progress_callback(progress), players=names if any(names) else None,
                                first_server=first_server or None)
    added = next((m for m in engine.matches() if m["id"] == match_id), {"name": "the match", "strokes": 0})
    label = added["name"].replace("_", " ")
    note = f"Added {label} ({_strokes(added['strokes'])})."
    if ann is None and vid is not None:
        note = f"Detected {_strokes(added['strokes'])}; added {label}."
    return gr.Dropdown(choices=engine.match_choices(), value=match_id), note


def answer_note(ans: Answer) -> str:
    """The line above the results: the question, what was found (strokes or rallies), the words read
    otherwise than typed and the words left out."""
    if ans.rallies:
        n = len(ans.rallies)
        count = f"{n} matching rall{'y' if n == 1 else 'ies'} ({_strokes(len(ans.rows))})."
    else:
        count = f"{len(ans.rows)} matching {_strokes(len(ans.rows)).split(' ', 1)[1]}."
    note = f"**“{ans.question}”**: " + (ans.message or count)
    if ans.corrected:
        note += " Read " + ", ".join(f"“{typed}” as {meant}" for typed, meant in ans.corrected) + "."
    if ans.ignored:
        note += " Ignored: " + ", ".join(f"“{w}”" for w in ans.ignored) + "."
    if _near(ans):
        note += f" Below: the {len(ans.near_misses)} closest strokes, which do not match (click one to watch it)."
    return note


def _near(ans: Answer) -> bool:
    """An answer without results that offers the strokes closest to the question instead."""
    return not ans.rows and not ans.rallies and bool(ans.near_misses)


def on_ask(engine: Engine, q: str, match_id: int | None, lane_by: str) -> tuple:
    """A question's (result rows, table, timeline, message, counts): strokes, or rallies when it asks
    for them ("rallies won by X"); the message quotes the question it answers. A question that
    cannot be asked keeps the shown results and says why."""
    try:
        ans = engine.ask(q, match_id)
    except EXPECTED as err:
        why = str(err).strip("'\"")
        return gr.skip(), gr.skip(), gr.skip(), f"⚠ {why} (the results below are unchanged)", gr.skip()
    if _near(ans):  # the near misses, marked apart: another table label, a titled timeline
        rows = ans.near_misses
        table = _table(rows, False, label="Close to the question, not matching it (click a row to watch it)")
        return rows, table, _timeline(engine, rows, lane_by, title="Close strokes (not matches)"), \
            answer_note(ans), _counts(ans)
    rows = ans.rallies or ans.rows
    return rows, _table(rows, bool(ans.rallies)), _timeline(engine, rows, lane_by), answer_note(ans), _counts(ans)


def _rallies_of(engine: Engine, rows: list[dict]) -> list[dict] | None:
    """The rallies of the results' sets (None: results without a match)."""
    match_id = rows[0].get("match_id") if rows else None
    return engine.rally_spans(match_id, {r.get("set_no") for r in rows}) if match_id is not None else None


def _timeline(engine: Engine, rows: list[dict], lane_by: str, zoom: str | None = None,
              title: str | None = None) -> go.Figure:
    """The results on the timeline over the rallies of their sets (zoomed to the rally "SET:RALLY")."""
    picked = tuple(int(v) for v in zoom.split(":")) if zoom else None
    return timeline_figure(rows, lane_by, rallies=_rallies_of(engine, rows), zoom=picked, title=title)


def on_rallies(engine: Engine, rows: list[dict] | None) -> gr.Dropdown:
    """The zoom picker with the rallies of the results' sets ("whole video" picked)."""
    rallies = _rallies_of(engine, rows or []) or []
    several = len({r["set_no"] for r in rallies}) > 1
    choices = [((f"Set {r['set_no']} · rally {r['rally']}" if several else f"Rally {r['rally']}")
                + (f" ({r['score']})" if r.get("score") else ""), f"{r['set_no']}:{r['rally']}") for r in rallies]
    return gr.Dropdown(choices=[("whole video", "")] + choices, value="")


def on_lanes(engine: Engine, rows: list[dict] | None, lane_by: str, zoom: str | None = None) -> go.Figure:
    """The timeline of the current results with other lanes, or zoomed to a rally."""
    return _timeline(engine, rows or [], lane_by, zoom)


def _player(path: Path, current_name: str | None, payload: str) -> tuple:
    """(video, video name, payload): the player swaps files only when `path` is not the loaded one."""
    return str(path) if path.name != current_name else gr.skip(), path.name, payload


def jump(engine: Engine, rows: list[dict] | None, index: int | None, current_name: str | None,
         lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S, loop: bool = False) -> tuple:
    """(video, video name, seek payload) for result `index`, `lead_in` s before its window (with
    `loop`, played again and again to `lead_out` s after it); a result in another set's video
    swaps the player first."""
    if not rows or index is None or not 0 <= index < len(rows):
        return gr.skip(), gr.skip(), gr.skip()
    r = rows[index]
    path, _ = engine.match_video(r.get("match_id"), r.get("set_no"))
    if path is None:
        raise gr.Error("This stroke's match has no video.")
    return _player(path, current_name, seek_payload(r["start_s"], path, lead_in, r.get("end_s"), lead_out, loop))


def on_select(engine: Engine, rows: list[dict] | None, current_name: str | None, evt: gr.SelectData,
              lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S, loop: bool = False) -> tuple:
    """A click on a results table row: jump to it."""
    return jump(engine, rows, row_index(evt), current_name, lead_in, lead_out, loop)


def on_pick(engine: Engine, rows: list[dict] | None, current_name: str | None, value: str | None,
            lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S, loop: bool = False) -> tuple:
    """A click on a timeline mark (the page writes "row:time" into the hidden box): jump to it."""
    row = int(str(value).split(":")[0]) if value else None
    return jump(engine, rows, row, current_name, lead_in, lead_out, loop)


def on_timeline_click(engine: Engine, rows: list[dict] | None, current_name: str | None, value: str | None,
                      lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S,
                      loop: bool = False) -> tuple:
    """A click on the timeline: (video, video name, seek payload, zoom): a stroke's mark plays it, a
    rally's label zooms the timeline to that rally (no seek)."""
    if value and str(value).startswith("rally:"):
        _, set_no, rally = str(value).split(":")[:3]
        return gr.skip(), gr.skip(), "", f"{int(set_no)}:{int(rally)}"
    return (*on_pick(engine, rows, current_name, value, lead_in, lead_out, loop), gr.skip())


def on_play_all(engine: Engine, rows: list[dict] | None, current_name: str | None,
                lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S, in_order: bool = False) -> tuple:
    """(video, video name, play-all payload): every result with a video, set after set in time order
    (with `in_order`, as listed: a playlist), the player starting on the first one's video."""
    if not rows:
        raise gr.Error("Ask a question first: Play all steps through its results.")
    videos, segs = {}, []
    for r in rows:
        where = (r.get("match_id") or 0, r.get("set_no") or 0)
        if where not in videos:
            path, set_no = engine.match_video(r.get("match_id"), r.get("set_no"))
            videos[where] = path if set_no == r.get("set_no") else None  # never another set's video
        if videos[where] is not None and r.get("start_s") is not None:
            segs.append((where, r["start_s"], r["end_s"], videos[where]))
    if not segs:
        raise gr.Error("These results have no video.")
    if not in_order:
        segs.sort(key=lambda s: (s[0], s[1]))
    return _player(segs[0][3], current_name, play_all_payload([s[1:] for s in segs], lead_in, lead_out))


def on_export_csv(engine: Engine, rows: list[dict] | None) -> dict:
    """The download box, shown, with the results as a CSV under exports/."""
    if not rows:
        raise gr.Error("No results to export.")
    return gr.update(value=str(engine.export_results_csv(rows)), visible=True)


def on_export_mp4(engine: Engine, rows: list[dict] | None, progress: gr.Progress = gr.Progress()) -> dict:
    """The download box, shown, with a highlight video of the results under exports/."""
    if not rows:
        raise gr.Error("No results to export.")
    return gr.update(value=str(engine.export_highlights(rows, progress=progress_callback(progress))), visible=True)


# ---------------------------------------------------------------- the playlist: clips of answers, in an order of one's own

PLAYLIST_COLUMNS = ["#", "set", "rally", "stroke", "player", "what", "time s"]
PLAYLIST_WIDTHS = ["6%", "6%", "8%", "8%", "20%", "40%", "12%"]


def playlist_table(items: list[dict]) -> list[list]:
    return [[i + 1, r.get("set_no"), r.get("rally"), "" if r.get("kind") == "rally" else r.get("ball_round"),
             r.get("player_name") or r.get("side") or "",
             r.get("caption") or r.get("stroke") or "", round(float(r.get("start_s") or 0.0), 2)]
            for i, r in enumerate(items)]


def _listed(items: list[dict], note: str, picked: int | None = None) -> tuple:
    """(items, table, picked index, note) after a playlist edit."""
    return items, playlist_table(items), picked, note


def on_playlist_add(engine: Engine, items: list[dict] | None, rows: list[dict] | None) -> tuple:
    """The current results appended to the playlist (those already in it left where they are)."""
    if not rows:
        raise gr.Error("Ask a question first: its results are what you add.")
    out = playlist.add(items or [], rows)
    added = len(out) - len(items or [])
    return _listed(out, f"Added {added} clip{'' if added == 1 else 's'}; the playlist holds {len(out)}.")


def on_playlist_clear(engine: Engine) -> tuple:
    return _listed([], "The playlist is empty.")


def on_playlist_pick(engine: Engine, items: list[dict] | None, current_name: str | None, evt: gr.SelectData,
                     lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S,
                     loop: bool = False) -> tuple:
    """A click on a playlist row: (picked index, note, video, video name, seek payload), the clip played."""
    i = row_index(evt)
    return (i, f"Clip {i + 1} picked: ↑ ↓ move it, ✕ removes it.",
            *jump(engine, items, i, current_name, lead_in, lead_out, loop))


def _move(items: list[dict] | None, picked: int | None, delta: int) -> tuple:
    if picked is None:
        raise gr.Error("Pick a clip of the playlist first (click its row).")
    out, to = playlist.move(items or [], int(picked), delta)
    return _listed(out, f"Clip {int(picked) + 1} is now clip {to + 1}.", to)


def on_playlist_up(engine: Engine, items: list[dict] | None, picked: int | None) -> tuple:
    return _move(items, picked, -1)


def on_playlist_down(engine: Engine, items: list[dict] | None, picked: int | None) -> tuple:
    return _move(items, picked, 1)


def on_playlist_remove(engine: Engine, items: list[dict] | None, picked: int | None) -> tuple:
    if picked is None:
        raise gr.Error("Pick a clip of the playlist first (click its row).")
    out = playlist.remove(items or [], int(picked))
    return _listed(out, f"Removed clip {int(picked) + 1}; the playlist holds {len(out)}.")


def on_playlist_save(engine: Engine, items: list[dict] | None, name: str) -> tuple[gr.Dropdown, str]:
    """The playlist saved under its name in the workspace (an existing one of that name replaced)."""
    path = engine.save_playlist(name, items or [])
    return gr.Dropdown(choices=engine.playlists(), value=path.stem), f"Saved “{path.stem}” ({len(items)} clips)."


def on_playlists(engine: Engine) -> gr.Dropdown:
    """The saved playlists' picker with the workspace's current ones (on page load)."""
    return gr.Dropdown(choices=engine.playlists())


def on_playlist_open(engine: Engine, name: str | None) -> tuple:
    """A saved playlist in place of the current one: (items, table, picked, note, name box)."""
    if not name:
        raise gr.Error("Pick a saved playlist first.")
    items = engine.open_playlist(name)
    return (*_listed(items, f"Opened “{name}” ({len(items)} clips)."), name)


def _export_name(name: str | None) -> str:
    return f"playlist-{name.strip()}" if name and name.strip() else "playlist"


def _clips(items: list[dict] | None) -> list[dict]:
    if not items:
        raise gr.Error("The playlist is empty: add the results of a question first.")
    return items


def on_playlist_csv(engine: Engine, items: list[dict] | None, name: str) -> dict:
    return gr.update(value=str(engine.export_results_csv(_clips(items), _export_name(name))), visible=True)


def on_playlist_mp4(engine: Engine, items: list[dict] | None, name: str, progress: gr.Progress = gr.Progress()) -> dict:
    path = engine.export_highlights(_clips(items), _export_name(name), progress=progress_callback(progress))
    return gr.update(value=str(path), visible=True)


def on_playlist_edl(engine: Engine, items: list[dict] | None, name: str) -> dict:
    return gr.update(value=str(engine.export_edl(_clips(items), _export_name(name))), visible=True)


def on_playlist_play(engine: Engine, items: list[dict] | None, current_name: str | None,
                     lead_in: float | None = SEEK_LEAD_S, lead_out: float | None = LEAD_OUT_S) -> tuple:
    """(video, video name, play-all payload): the playlist's clips in its order, across sets."""
    return on_play_all(engine, _clips(items), current_name, lead_in, lead_out, in_order=True)


# ---------------------------------------------------------------- layout and events


def create_analyze_tab(engine: Engine, shared) -> None:
    with gr.Tab("Analyze", id="analyze"):
        with gr.Row():
            match = gr.Dropdown(engine.match_choices() if engine.workspace else [], label="Match", scale=4,
                                elem_id="match-pick", value=shared.first_match)
            refresh = gr.Button("↻", scale=0, min_width=40)
        demo_status = gr.HTML(elem_id="demo-status", visible=shared.demo_pending)
        demo_timer = gr.Timer(1.0, active=shared.demo_pending or engine.demo.running)  # until the demo is there
        with gr.Accordion("Add a match", open=False, elem_id="add-match-form"):
            gr.Markdown("A video and its annotation CSV (ShuttleSet set file or reference CSV), the annotations "
                        "alone, or the video alone: its rallies and strokes are then detected (edit them in the "
                        "Strokes tab). Upload them, or give paths inside the workspace.")
            with gr.Row():
                up_video = gr.File(label="Video (mp4)", file_types=[".mp4", ".webm", ".mov", ".mkv", ".avi"])
                up_csv = gr.File(label="Annotations (csv)", file_types=[".csv"])
                up_folder = gr.File(label="…or a ShuttleSet folder as a zip (match.csv, homography.csv, "
                                    "<match>/set1.csv, videos beside)", file_types=[".zip"], elem_id="add-folder")
            with gr.Row():
                path_video = gr.Textbox(label="…or video path", placeholder="uploads/match/set1.mp4",
                                        elem_id="add-video-path")
                path_csv = gr.Textbox(label="…or annotation path (a set CSV or a ShuttleSet folder)",
                                      placeholder="uploads/match/set1.csv")
                name = gr.Textbox(label="Match name (for uploads)", value="match")
            with gr.Row():
                bottom = gr.Textbox(label="Player starting at the bottom end (names a set file's players too)",
                                    elem_id="player-bottom")
                upper = gr.Textbox(label="Player starting at the upper end", elem_id="player-upper")
                server = gr.Radio(FIRST_SERVER, value="", label="First server's end", elem_id="first-server")
            add = gr.Button("Add and index", elem_id="add-match")
            add_status = gr.Markdown(elem_id="add-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, elem_id="watch-col"):  # stays in view while the results scroll
                video = gr.Video(label="Match video", elem_id=VIDEO_ID, interactive=False, autoplay=False,
                                 value=shared.first_video)
                with gr.Row():
                    speed = gr.Radio(SPEEDS, value="1", label="Speed", elem_id="speed", scale=2)
                    lanes = gr.Radio(["player", "stroke", "side"], value="player", label="Timeline lanes", scale=2)
                    zoom = gr.Dropdown([("whole video", "")], value="", label="Zoom to rally", elem_id="timeline-zoom",
                                       scale=2, min_width=120)
                with gr.Row():
                    lead_in = gr.Number(SEEK_LEAD_S, label="Lead-in (s)", minimum=0, maximum=MAX_LEAD_S, step=0.5,
                                        elem_id="lead-in", min_width=90)
                    lead_out = gr.Number(LEAD_OUT_S, label="Lead-out (s)", minimum=0, maximum=MAX_LEAD_S, step=0.5,
                                         elem_id="lead-out", min_width=90)
                    loop = gr.Checkbox(False, label="Loop the clip", elem_id="loop-clip", min_width=90)
                gr.Markdown(KEYS_HINT, elem_id="player-keys")
                timeline = gr.Plot(timeline_figure([], empty="Ask a question: its strokes appear here"),
                                   label="Event timeline (click a mark to play it, a rally's label to zoom to it)", elem_id="timeline")
            with gr.Column(scale=4):
                with gr.Row():
                    question = gr.Textbox(label="Ask the match (Enter asks)", placeholder=EXAMPLES[0], lines=1,
                                          max_lines=1, elem_id="question", scale=5)
                    ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1, min_width=70)
                message = gr.Markdown(elem_id="answer-message")
                counts = gr.Dataframe(headers=["player", "strokes"], label="Counted", interactive=False,
                                      elem_id="answer-counts", visible=False, max_height=160)
                results = gr.Dataframe(headers=RESULT_COLUMNS, label="Matching strokes (click a row to play it)",
                                       interactive=False, wrap=True, elem_id="results", max_height=330, elem_classes="sl-table",
                                       column_widths=RESULT_WIDTHS)
                with gr.Row():
                    play_all = gr.Button("▶ Play all", elem_id="play-all")
                    export_csv = gr.Button("Export CSV")
                    export_mp4 = gr.Button("Export highlight mp4")
                action_note = gr.Markdown(elem_id="action-note")
                download = gr.File(label="Export", interactive=False, elem_id="export-file", height=90, visible=False)
                with gr.Accordion("Playlist: clips of your own, in your order", open=False, elem_id="playlist-box"):
                    with gr.Row():
                        pl_add = gr.Button("+ Add the results", elem_id="playlist-add")
                        pl_play = gr.Button("▶ Play the playlist", elem_id="playlist-play")
                        pl_clear = gr.Button("Clear", elem_id="playlist-clear")
                    pl_table = gr.Dataframe(headers=PLAYLIST_COLUMNS, interactive=False, wrap=True, max_height=240,
                                            column_widths=PLAYLIST_WIDTHS, elem_id="playlist", elem_classes="sl-table",
                                            label="Clips in playing order (click one to play and pick it)")
                    with gr.Row():
                        pl_up = gr.Button("↑ Up", elem_id="playlist-up", min_width=60)
                        pl_down = gr.Button("↓ Down", elem_id="playlist-down", min_width=60)
                        pl_remove = gr.Button("✕ Remove", elem_id="playlist-remove", min_width=60)
                    pl_note = gr.Markdown(elem_id="playlist-note")
                    with gr.Row():
                        pl_name = gr.Textbox(label="Name", elem_id="playlist-name", scale=2, max_lines=1)
                        pl_save = gr.Button("Save", elem_id="playlist-save", scale=1)
                        pl_saved = gr.Dropdown(engine.playlists() if engine.workspace else [], value=None,
                                               label="Saved playlists", elem_id="playlist-saved", scale=2)
                        pl_open = gr.Button("Open", elem_id="playlist-open", scale=1)
                    with gr.Row():
                        pl_csv = gr.Button("Export playlist CSV", elem_id="playlist-csv")
                        pl_mp4 = gr.Button("Export playlist mp4 (title cards)", elem_id="playlist-mp4")
                        pl_edl = gr.Button("Export playlist EDL", elem_id="playlist-edl")
                gr.Examples(EXAMPLES, inputs=question, label="Example questions")
        fps = gr.Textbox(elem_classes="sl-hidden", elem_id="video-fps", show_label=False,
                         value=_fps_text(engine, shared.first_match))
        seek = gr.Textbox(elem_classes="sl-hidden", elem_id="seek-payload", show_label=False)
        pick = gr.Textbox(elem_classes="sl-hidden", elem_id="timeline-pick", show_label=False)
        video_name = gr.State(Path(shared.first_video).name if shared.first_video else None)
        items, picked = gr.State([]), gr.State(None)  # the playlist and its picked clip
        shared.video, shared.video_name, shared.seek = video, video_name, seek

    match.change(bind(on_match, engine), match,
                 [shared.match, video, video_name, fps, shared.results, results, timeline, message, counts])
    refresh.click(bind(on_refresh, engine), None, match)
    demo_timer.tick(bind(on_demo_tick, engine), match, [demo_status, match, demo_timer])
    add.click(bind(said(on_add, 2, note=1), engine),
              [up_video, up_csv, path_video, path_csv, name, bottom, upper, server, up_folder], [match, add_status])
    # one listener for both triggers: a question asked while one runs waits for it, then replaces it
    gr.on([ask.click, question.submit], bind(on_ask, engine), [question, shared.match, lanes],
          [shared.results, results, timeline, message, counts], trigger_mode="always_last", concurrency_limit=4) \
        .then(bind(on_rallies, engine), shared.results, zoom)
    speed.change(None, speed, None, js=SPEED_JS)
    lanes.change(bind(on_lanes, engine), [shared.results, lanes, zoom], timeline)
    zoom.change(bind(on_lanes, engine), [shared.results, lanes, zoom], timeline)
    clip = [lead_in, lead_out, loop]
    results.select(bind(on_select, engine), [shared.results, video_name, *clip], [video, video_name, seek]) \
        .then(None, seek, None, js=SEEK_JS)
    pick.change(bind(on_timeline_click, engine), [shared.results, video_name, pick, *clip], [video, video_name, seek, zoom]) \
        .then(None, seek, None, js=SEEK_JS)
    play_all.click(bind(said(on_play_all, 3, blank=(2,)), engine), [shared.results, video_name, lead_in, lead_out],
                   [video, video_name, seek, action_note]) \
        .then(None, seek, None, js=PLAY_ALL_JS)
    export_csv.click(bind(said(on_export_csv, 1), engine), shared.results, [download, action_note])
    export_mp4.click(bind(said(on_export_mp4, 1), engine), shared.results, [download, action_note])

    listed = [items, pl_table, picked, pl_note]
    pl_add.click(bind(said(on_playlist_add, 4, note=3), engine), [items, shared.results], listed)
    pl_clear.click(bind(on_playlist_clear, engine), None, listed)
    pl_table.select(bind(said(on_playlist_pick, 5, note=1, blank=(4,)), engine), [items, video_name, *clip],
                    [picked, pl_note, video, video_name, seek]) \
        .then(None, seek, None, js=SEEK_JS)
    for button, handler in ((pl_up, on_playlist_up), (pl_down, on_playlist_down), (pl_remove, on_playlist_remove)):
        button.click(bind(said(handler, 4, note=3), engine), [items, picked], listed)
    pl_save.click(bind(said(on_playlist_save, 2, note=1), engine), [items, pl_name], [pl_saved, pl_note])
    pl_open.click(bind(said(on_playlist_open, 5, note=3), engine), pl_saved, [*listed, pl_name])
    shared.on_load.append((bind(on_playlists, engine), None, pl_saved))
    pl_play.click(bind(said(on_playlist_play, 3, blank=(2,)), engine), [items, video_name, lead_in, lead_out],
                  [video, video_name, seek, pl_note]) \
        .then(None, seek, None, js=PLAY_ALL_JS)
    for button, handler in ((pl_csv, on_playlist_csv), (pl_mp4, on_playlist_mp4), (pl_edl, on_playlist_edl)):
        button.click(bind(said(handler, 1), engine), [items, pl_name], [download, pl_note])
    shared.app_load_js += [TIMELINE_CLICK_JS, PLAYER_KEYS_JS, PLAYHEAD_JS]
