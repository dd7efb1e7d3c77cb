"""Strokes tab: every stroke of the match with its captions and detection confidence, filters (one
keeps only the uncertain detections, to review them), a clip preview, caption corrections (saved
to the index, kept across re-indexing, exportable as stage-1 training data) and stroke edits: add
a hit at the video's time (button or key H), delete one, move one by 1 or 5 frames, give it to the
other player; edits are kept across re-indexing and export as a set CSV (training data for the
detector)."""
from __future__ import annotations

import gradio as gr

from core.engine import Engine
from core.store import UNCERTAIN_BELOW, is_uncertain
from core.vocab import ZONE_PHRASES
from ui.common import SEEK_JS, VIDEO_ID, bind, confidence_cell, row_index, said, seek_payload

COLUMNS = ["id", "set", "rally", "stroke", "time (s)", "side", "player", "type", "zone", "caption",
           "model caption", "annotation caption", "confidence", "frame", "edit"]
WIDTHS = [50, 40, 48, 56, 64, 70, 120, 70, 110, "20%", "17%", "17%", 84, 64, 70]  # px, or a share of the table
FILTERS = ("set_no", "rally", "side", "player_name", "stroke", "zone")
INPUTS = (*FILTERS, "uncertain")  # the filters' values as handlers receive them: the dropdowns, the checkbox
LABELS = {"set_no": "Set", "rally": "Rally", "side": "Side", "player_name": "Player", "stroke": "Stroke type",
          "zone": "Zone"}


def stroke_table(rows: list[dict]) -> list[list]:
    return [[r["id"], r.get("set_no"), r.get("rally"), r.get("ball_round"), round(float(r.get("time_s") or 0), 2),
             r.get("side") or "", r.get("player_name") or "", r.get("stroke") or "",
             ZONE_PHRASES.get(r.get("zone"), "") if r.get("zone") is not None else "",
             (r.get("caption") or "") + (" ✎" if r.get("corrected") else ""),
             r.get("model_caption") or "", r.get("ann_caption") or "", confidence_cell(r.get("confidence")),
             r.get("frame"), r.get("edited") or ""]
            for r in rows]


def _choices(values: list, key: str) -> list:
    if key == "zone":
        return [("all", "all")] + [(f"{v}: {ZONE_PHRASES.get(v, v)}", v) for v in values]
    return [("all", "all")] + [(str(v), v) for v in values]


# ---------------------------------------------------------------- handlers: engine + input values -> outputs


def load_rows(engine: Engine, match_id: int | None, *values: str | int | bool) -> tuple[list[dict], list[list], str]:
    """(rows, table, count line) of the match's strokes; `values` are the INPUTS' picks: the FILTERS'
    ("all" for any), then whether only uncertain detections are listed (off when left out)."""
    rows = engine.strokes(match_id, **dict(zip(INPUTS, values))) if match_id is not None else []
    uncertain = sum(is_uncertain(r.get("confidence")) for r in rows)
    return rows, stroke_table(rows), f"{len(rows)} strokes" + (f", {uncertain} uncertain" if uncertain else "")


def on_match(engine: Engine, match_id: int | None, uncertain: bool = False) -> tuple:
    """A newly picked match: each filter's choices (reset to "all"), then load_rows' outputs (the
    "uncertain only" box stays as it is)."""
    options = engine.filter_options(match_id)
    updates = [gr.Dropdown(choices=_choices(options[k], k), value="all") for k in FILTERS]
    return (*updates, *load_rows(engine, match_id, *(["all"] * len(FILTERS)), uncertain))


def on_select(engine: Engine, rows: list[dict], evt: gr.SelectData) -> tuple[int, str, str, str | None]:
    """A click on a stroke: (its id, where it is, its caption to edit, its clip or None without a video)."""
    r = rows[row_index(evt)]
    where = f"Set {r['set_no']}, rally {r['rally']}, stroke {r['ball_round']} — {r.get('time_s', 0):.2f} s"
    if r.get("edited"):
        where += f" (frame {r['frame']}, edited: {r['edited']})"
    if is_uncertain(r.get("confidence")):
        where += f" (uncertain detection: confidence {r['confidence']:.2f})"
    try:
        video = str(engine.clip(r))
    except Exception:  # noqa: BLE001 - no video is fine here: the caption can still be edited
        video = None
    return r["id"], f"**{where}**", r.get("caption") or "", video


def on_save(engine: Engine, sid: int | None, text: str, match_id: int | None,
            *values: str | int) -> tuple[list[dict], list[list], str]:
    """Save a caption correction; load_rows' outputs, which show it."""
    if sid is None:
        raise gr.Error("Click a stroke first.")
    engine.set_caption(sid, text)
    gr.Info("Caption saved.")
    return load_rows(engine, match_id, *values)


def on_revert(engine: Engine, sid: int | None, match_id: int | None, *values: str | int) -> tuple:
    """Remove a stroke's correction: load_rows' outputs and the caption it falls back to."""
    if sid is None:
        raise gr.Error("Click a stroke first.")
    engine.set_caption(sid, "")
    rows = load_rows(engine, match_id, *values)
    text = next((r.get("caption") or "" for r in rows[0] if r["id"] == sid), "")
    return (*rows, text)


def on_export(engine: Engine, match_id: int | None) -> str:
    """The path of the match's captions (corrections first) as stage-1 training data."""
    path, n = engine.export_captions(match_id)
    gr.Info(f"{n} captions written.")
    return str(path)


# ---------------------------------------------------------------- stroke edits

SIDE_CHOICES = [("alternate", ""), ("bottom", "bottom"), ("upper", "upper")]
MOVES = ("-5", "-1", "+1", "+5")  # the move buttons' labels: frames
# The edit player's current time replaces the first input (the hidden time box) before the server runs.
READ_TIME_JS = """
(...args) => {
  const v = document.querySelector('#edit-video video');
  args[0] = v ? String(v.currentTime) : '';
  return args;
}
"""
# Key H (outside text fields) presses "Add hit" while the Strokes tab is shown.
ADD_HIT_KEY_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'h' && e.key !== 'H') return;
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    const b = document.querySelector('#add-hit');
    if (!b || b.offsetParent === null) return;
    e.preventDefault();
    b.click();
  });
}
"""


# The same seek as the Analyze tab's player, on the edit player.
SEEK_EDIT_JS = SEEK_JS.replace(f"#{VIDEO_ID} video", "#edit-video video")


def on_seek_edit(engine: Engine, rows: list[dict], video_name: str | None, evt: gr.SelectData) -> str:
    """A click on a stroke also seeks the edit player to just before it (when it shows that set)."""
    r = rows[row_index(evt)]
    return seek_payload(r["start_s"], video_name) if r.get("start_s") is not None else gr.skip()


def _after_edit(engine: Engine, sid: int | None, note: str, match_id: int | None, values) -> tuple:
    """load_rows' outputs, the edited stroke's id and a status line."""
    return (*load_rows(engine, match_id, *values), sid, note)


def on_edit_video(engine: Engine, match_id: int | None) -> tuple[str | None, int | None, str | None]:
    """(the match video for the edit player, its set number, its file name)."""
    path, set_no = engine.match_video(match_id)
    return (str(path) if path else None), set_no, (path.name if path else None)


def on_add_hit(engine: Engine, t: str | float | None, side: str, match_id: int | None, set_no: int | None,
               *values: str | int) -> tuple:
    """Add a hit at the edit player's time `t` (seconds)."""
    if match_id is None:
        raise gr.Error("Pick a match first.")
    if t is None or str(t).strip() == "":
        raise gr.Error("Play the match video to the hit first: the hit is added at its time.")
    sid = engine.add_stroke(match_id, float(t), set_no, side or None)
    row = next((r for r in engine.strokes(match_id) if r["id"] == sid), {})
    return _after_edit(engine, sid, f"Added a hit at {float(t):.2f} s (frame {row.get('frame')}, rally "
                                    f"{row.get('rally')}, {row.get('side')} player).", match_id, values)


def _need(sid: int | None) -> int:
    if sid is None:
        raise gr.Error("Click a stroke first.")
    return int(sid)


def on_move(engine: Engine, label: str, sid: int | None, match_id: int | None, *values: str | int) -> tuple:
    """Move the picked stroke by the button's frames (its label: -5, -1, +1, +5)."""
    frames = int(str(label).replace("\u2212", "-").split()[0])
    new = engine.move_stroke(_need(sid), frames)
    return _after_edit(engine, new, f"Moved the stroke {frames:+d} frame{'s' if abs(frames) > 1 else ''}.",
                       match_id, values)


def on_flip(engine: Engine, sid: int | None, rows: list[dict], match_id: int | None, *values: str | int) -> tuple:
    """Give the picked stroke's hit to the other player."""
    r = next((r for r in rows or [] if r["id"] == _need(sid)), None)
    if r is None:
        raise gr.Error("Click a stroke first.")
    side = "upper" if r.get("side") == "bottom" else "bottom"
    new = engine.set_stroke_side(sid, side)
    return _after_edit(engine, new, f"The stroke is now the {side} player's.", match_id, values)


def on_delete(engine: Engine, sid: int | None, match_id: int | None, *values: str | int) -> tuple:
    engine.delete_stroke(_need(sid))
    return _after_edit(engine, None, "Deleted the stroke.", match_id, values)


def on_undo(engine: Engine, sid: int | None, match_id: int | None, *values: str | int) -> tuple:
    """Drop the picked stroke's edits (an added hit goes away)."""
    new = engine.revert_stroke(_need(sid))
    return _after_edit(engine, new, "The stroke's edits are undone.", match_id, values)


def on_export_strokes(engine: Engine, match_id: int | None) -> list[str]:
    """The match's strokes, edits applied, as set CSVs (detector training data)."""
    if match_id is None:
        raise gr.Error("Pick a match first.")
    paths = engine.export_strokes(match_id)
    gr.Info(f"{len(paths)} set file{'s' if len(paths) > 1 else ''} written.")
    return [str(p) for p in paths]


# ---------------------------------------------------------------- layout and events


def create_strokes_tab(engine: Engine, shared) -> None:
    with gr.Tab("Strokes", id="strokes") as tab:
        with gr.Row():
            filters = {k: gr.Dropdown([("all", "all")], value="all", label=LABELS[k], elem_id=f"filter-{k}",
                                      min_width=120) for k in FILTERS}
            uncertain = gr.Checkbox(label=f"Uncertain only (confidence below {UNCERTAIN_BELOW})",
                                    elem_id="filter-uncertain", min_width=120)
        count = gr.Markdown(elem_id="stroke-count")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="stroke-table", max_height=420,
                             column_widths=WIDTHS)
        with gr.Row():
            with gr.Column(scale=2):
                clip = gr.Video(label="Clip", elem_id="clip-preview", interactive=False, autoplay=True, loop=True)
            with gr.Column(scale=3):
                picked = gr.Markdown("Click a stroke to preview it and correct its caption.", elem_id="picked")
                caption = gr.Textbox(label="Caption", elem_id="caption-edit", max_length=500)
                with gr.Row():
                    save = gr.Button("Save caption", variant="primary", elem_id="save-caption")
                    revert = gr.Button("Remove correction")
                with gr.Row():
                    export = gr.Button("Export captions as stage-1 training data")
                exported = gr.File(label="train.json", interactive=False, height=90)
        with gr.Accordion("Edit strokes (kept when the match is indexed again)", open=True):
            gr.Markdown("Play the match to a hit and press **Add hit** (or the key H); click a stroke in the "
                        "table to move it, give it to the other player or delete it.")
            with gr.Row():
                with gr.Column(scale=3):
                    edit_video = gr.Video(label="Match video", elem_id="edit-video", interactive=False,
                                          autoplay=False)
                with gr.Column(scale=2):
                    add_side = gr.Radio(SIDE_CHOICES, value="", label="Hitter of an added hit", elem_id="add-side")
                    add_hit = gr.Button("Add hit at the video's time (H)", variant="primary", elem_id="add-hit")
                    with gr.Row():
                        moves = [gr.Button(m, min_width=50, elem_id=f"move{m.replace('+', 'p').replace('-', 'm')}")
                                 for m in MOVES]
                    with gr.Row():
                        flip = gr.Button("Hit by the other player", elem_id="flip-side")
                        delete = gr.Button("Delete stroke", variant="stop", elem_id="delete-stroke")
                        undo = gr.Button("Undo its edits", elem_id="undo-edits")
                    edit_status = gr.Markdown(elem_id="edit-status")
                    export_strokes = gr.Button("Export strokes as set CSV (detector training data)",
                                               elem_id="export-strokes")
                    exported_strokes = gr.File(label="set CSV", interactive=False, file_count="multiple",
                                               height=90, elem_id="exported-strokes")
        edit_time = gr.Textbox(elem_classes="sl-hidden", elem_id="edit-time", show_label=False)
        edit_seek = gr.Textbox(elem_classes="sl-hidden", elem_id="edit-seek", show_label=False)
        edit_video_name = gr.State(None)
        stroke_id = gr.State(None)
        rows_state = gr.State([])
        video_set = gr.State(None)

    dropdowns = [filters[k] for k in FILTERS]
    fvals = [*dropdowns, uncertain]  # INPUTS
    shared.match.change(bind(on_match, engine), [shared.match, uncertain], [*dropdowns, rows_state, table, count])
    tab.select(bind(load_rows, engine), [shared.match, *fvals], [rows_state, table, count])
    shared.on_load.append((bind(on_match, engine), [shared.match, uncertain], [*dropdowns, rows_state, table, count]))
    for f in fvals:
        f.input(bind(load_rows, engine), [shared.match, *fvals], [rows_state, table, count])
    table.select(bind(on_select, engine), rows_state, [stroke_id, picked, caption, clip])
    save.click(bind(on_save, engine), [stroke_id, caption, shared.match, *fvals], [rows_state, table, count])
    revert.click(bind(on_revert, engine), [stroke_id, shared.match, *fvals], [rows_state, table, count, caption])
    export.click(bind(on_export, engine), shared.match, exported)
    edited = [rows_state, table, count, stroke_id, edit_status]
    shared.match.change(bind(on_edit_video, engine), shared.match, [edit_video, video_set, edit_video_name])
    shared.on_load.append((bind(on_edit_video, engine), shared.match, [edit_video, video_set, edit_video_name]))
    table.select(bind(on_seek_edit, engine), [rows_state, edit_video_name], edit_seek) \
        .then(None, edit_seek, None, js=SEEK_EDIT_JS)
    add_hit.click(bind(said(on_add_hit, 5, note=4), engine), [edit_time, add_side, shared.match, video_set, *fvals], edited,
                  js=READ_TIME_JS)
    for b in moves:
        b.click(bind(said(on_move, 5, note=4), engine), [b, stroke_id, shared.match, *fvals], edited)
    flip.click(bind(said(on_flip, 5, note=4), engine), [stroke_id, rows_state, shared.match, *fvals], edited)
    delete.click(bind(said(on_delete, 5, note=4), engine), [stroke_id, shared.match, *fvals], edited)
    undo.click(bind(said(on_undo, 5, note=4), engine), [stroke_id, shared.match, *fvals], edited)
    export_strokes.click(bind(on_export_strokes, engine), shared.match, exported_strokes)
    shared.app_load_js.append(ADD_HIT_KEY_JS)
