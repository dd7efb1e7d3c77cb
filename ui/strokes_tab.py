"""Strokes tab: every stroke of the match with its captions, filters, a clip preview, and caption
corrections (saved to the index, kept across re-indexing, exportable as stage-1 training data)."""
from __future__ import annotations

import gradio as gr

from core.engine import Engine
from core.vocab import ZONE_PHRASES
from ui.common import bind, row_index

COLUMNS = ["id", "set", "rally", "stroke", "time (s)", "side", "player", "type", "zone", "caption",
           "model caption", "annotation caption"]
FILTERS = ("set_no", "rally", "side", "player_name", "stroke", "zone")
LABELS = {"set_no": "Set", "rally": "Rally", "side": "Side", "player_name": "Player", "stroke": "Stroke type",
          "zone": "Zone"}


def stroke_table(rows: list[dict]) -> list[list]:
    return [[r["id"], r.get("set_no"), r.get("rally"), r.get("ball_round"), round(float(r.get("time_s") or 0), 2),
             r.get("side") or "", r.get("player_name") or "", r.get("stroke") or "",
             ZONE_PHRASES.get(r.get("zone"), "") if r.get("zone") is not None else "",
             (r.get("caption") or "") + (" ✎" if r.get("corrected") else ""),
             r.get("model_caption") or "", r.get("ann_caption") or ""] for r in rows]


def _choices(values: list, key: str) -> list:
    if key == "zone":
        return [("all", "all")] + [(f"{v}: {ZONE_PHRASES.get(v, v)}", v) for v in values]
    return [("all", "all")] + [(str(v), v) for v in values]


# ---------------------------------------------------------------- handlers: engine + input values -> outputs


def load_rows(engine: Engine, match_id: int | None, *values: str | int) -> tuple[list[dict], list[list], str]:
    """(rows, table, count line) of the match's strokes; `values` are the FILTERS' picks, "all" for any."""
    rows = engine.strokes(match_id, **dict(zip(FILTERS, values))) if match_id is not None else []
    return rows, stroke_table(rows), f"{len(rows)} strokes"


def on_match(engine: Engine, match_id: int | None) -> tuple:
    """A newly picked match: each filter's choices (reset to "all"), then load_rows' outputs."""
    options = engine.filter_options(match_id)
    updates = [gr.Dropdown(choices=_choices(options[k], k), value="all") for k in FILTERS]
    return (*updates, *load_rows(engine, match_id, *(["all"] * len(FILTERS))))


def on_select(engine: Engine, rows: list[dict], evt: gr.SelectData) -> tuple[int, str, str, str | None]:
    """A click on a stroke: (its id, where it is, its caption to edit, its clip or None without a video)."""
    r = rows[row_index(evt)]
    where = f"Set {r['set_no']}, rally {r['rally']}, stroke {r['ball_round']} — {r.get('time_s', 0):.2f} s"
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


# ---------------------------------------------------------------- layout and events


def create_strokes_tab(engine: Engine, shared) -> None:
    with gr.Tab("Strokes", id="strokes") as tab:
        with gr.Row():
            filters = {k: gr.Dropdown([("all", "all")], value="all", label=LABELS[k], elem_id=f"filter-{k}",
                                      min_width=120) for k in FILTERS}
        count = gr.Markdown(elem_id="stroke-count")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="stroke-table", max_height=420)
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
        stroke_id = gr.State(None)
        rows_state = gr.State([])

    fvals = [filters[k] for k in FILTERS]
    shared.match.change(bind(on_match, engine), shared.match, [*fvals, rows_state, table, count])
    tab.select(bind(load_rows, engine), [shared.match, *fvals], [rows_state, table, count])
    shared.on_load.append((bind(on_match, engine), shared.match, [*fvals, rows_state, table, count]))
    for f in fvals:
        f.input(bind(load_rows, engine), [shared.match, *fvals], [rows_state, table, count])
    table.select(bind(on_select, engine), rows_state, [stroke_id, picked, caption, clip])
    save.click(bind(on_save, engine), [stroke_id, caption, shared.match, *fvals], [rows_state, table, count])
    revert.click(bind(on_revert, engine), [stroke_id, shared.match, *fvals], [rows_state, table, count, caption])
    export.click(bind(on_export, engine), shared.match, exported)
