"""Stats tab: stroke types per player and court heatmaps of hit and landing positions, for the
match or for the current question's results."""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from core.engine import Engine
from ui.common import bind
from ui.figures import counts_figure, court_figure

SCOPES = ["Whole match", "Current question's results"]


def on_show(engine: Engine, scope_v: str, match_id: int | None,
            results: list[dict] | None) -> tuple[str, go.Figure, go.Figure]:
    """(a note counting the strokes, stroke types per player, court heatmaps) of the match or of the results."""
    if scope_v == SCOPES[1]:
        rows, what = results or [], "the current question's results"
    else:
        rows, what = (engine.strokes(match_id) if match_id is not None else []), "the whole match"
    rows = engine.court_rows(rows)
    placed = sum(1 for r in rows if r.get("hit_m") or r.get("landing_m"))
    return (f"{len(rows)} strokes of {what}; {placed} with court positions.",
            counts_figure(rows), court_figure(rows))


def create_stats_tab(engine: Engine, shared) -> None:
    with gr.Tab("Stats", id="stats") as tab:
        scope = gr.Radio(SCOPES, value=SCOPES[0], label="Strokes", elem_id="stats-scope")
        note = gr.Markdown(elem_id="stats-note")
        counts = gr.Plot(elem_id="stats-counts", show_label=False)
        court = gr.Plot(elem_id="stats-court", show_label=False)

    inputs, outputs = [scope, shared.match, shared.results], [note, counts, court]
    tab.select(bind(on_show, engine), inputs, outputs)
    scope.change(bind(on_show, engine), inputs, outputs)
