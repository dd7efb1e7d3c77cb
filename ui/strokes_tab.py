"""Strokes tab: every stroke of the match with its captions, filters, a clip preview, and caption
corrections (saved to the index, kept across re-indexing, exportable as stage-1 training data)."""
from __future__ import annotations

import gradio as gr

from core.engine import Engine
from core.vocab import ZONE_PHRASES
from ui.common import guarded

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

    def load_rows(match_id, *values):
        rows = engine.strokes(match_id, **dict(zip(FILTERS, values))) if match_id is not None else []
        return rows, stroke_table(rows), f"{len(rows)} strokes"

    def on_match(match_id):
        options = engine.filter_options(match_id)
        updates = [gr.Dropdown(choices=_choices(options[k], k), value="all") for k in FILTERS]
        return (*updates, *load_rows(match_id, *(["all"] * len(FILTERS))))

    def on_select(rows, evt: gr.SelectData):
        i = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        r = rows[i]
        where = f"Set {r['set_no']}, rally {r['rally']}, stroke {r['ball_round']} — {r.get('time_s', 0):.2f} s"
        try:
            video = str(engine.clip(r))
        except Exception:  # noqa: BLE001 - no video is fine here: the caption can still be edited
            video = None
        return r["id"], f"**{where}**", r.get("caption") or "", video

    def on_save(sid, text, match_id, *values):
        if sid is None:
            raise gr.Error("Click a stroke first.")
        engine.set_caption(sid, text)
        gr.Info("Caption saved.")
        return load_rows(match_id, *values)

    def on_revert(sid, match_id, *values):
        if sid is None:
            raise gr.Error("Click a stroke first.")
        engine.set_caption(sid, "")
        rows = load_rows(match_id, *values)
        text = next((r.get("caption") or "" for r in rows[0] if r["id"] == sid), "")
        return (*rows, text)

    def on_export(match_id):
        path, n = engine.export_captions(match_id)
        gr.Info(f"{n} captions written.")
        return str(path)

    fvals = [filters[k] for k in FILTERS]
    shared.match.change(guarded(on_match), shared.match, [*fvals, rows_state, table, count])
    tab.select(guarded(load_rows), [shared.match, *fvals], [rows_state, table, count])
    shared.on_load.append((guarded(on_match), shared.match, [*fvals, rows_state, table, count]))
    for f in fvals:
        f.input(guarded(load_rows), [shared.match, *fvals], [rows_state, table, count])
    table.select(guarded(on_select), rows_state, [stroke_id, picked, caption, clip])
    save.click(guarded(on_save), [stroke_id, caption, shared.match, *fvals], [rows_state, table, count])
    revert.click(guarded(on_revert), [stroke_id, shared.match, *fvals], [rows_state, table, count, caption])
    export.click(guarded(on_export), shared.match, exported)
