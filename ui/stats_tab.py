"""Stats tab: stroke types per player and court heatmaps of hit and landing positions, for the
match or for the current question's results."""
from __future__ import annotations

import gradio as gr

from core.engine import Engine
from ui.common import guarded
from ui.figures import counts_figure, court_figure

SCOPES = ["Whole match", "Current question's results"]


def create_stats_tab(engine: Engine, shared) -> None:
    with gr.Tab("Stats", id="stats") as tab:
        scope = gr.Radio(SCOPES, value=SCOPES[0], label="Strokes", elem_id="stats-scope")
        note = gr.Markdown(elem_id="stats-note")
        counts = gr.Plot(elem_id="stats-counts", show_label=False)
        court = gr.Plot(elem_id="stats-court", show_label=False)

    def on_show(scope_v, match_id, results):
        if scope_v == SCOPES[1]:
            rows, what = results or [], "the current question's results"
        else:
            rows, what = (engine.strokes(match_id) if match_id is not None else []), "the whole match"
        rows = engine.court_rows(rows)
        placed = sum(1 for r in rows if r.get("hit_m") or r.get("landing_m"))
        return (f"{len(rows)} strokes of {what}; {placed} with court positions.",
                counts_figure(rows), court_figure(rows))

    inputs, outputs = [scope, shared.match, shared.results], [note, counts, court]
    tab.select(guarded(on_show), inputs, outputs)
    scope.change(guarded(on_show), inputs, outputs)
