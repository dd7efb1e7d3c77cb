"""Summary tab: the current match in words (core.report): the match report, a sentence per rally,
the score-progression chart (a click on a point shows its rally, which plays in the Analyze tab's
player) and export as Markdown or HTML under the workspace's exports/."""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from core.engine import SEEK_LEAD_S, Engine
from core.report import load_match, match_report, render, score_figure, to_markdown
from core.workspace import safe_name
from ui.common import LEAD_OUT_S, SEEK_JS, bind, plot_click_js, row_index, seek_payload

COLUMNS = ["set", "rally", "score before", "strokes", "point", "summary"]
EXPORTS = {"Markdown": "md", "HTML": "html"}

# A clicked chart point's "set:rally": the server shows that rally's summary.
CHART_CLICK_JS = plot_click_js("summary-chart", "summary-pick", "pt.customdata[0] + ':' + pt.customdata[1]")


def rally_table(report: dict) -> list[list]:
    names = report["match"]["players"]
    return [[r["set"], r["rally"], "-".join(map(str, r["score_before"])) if r["score_before"] else "", r["strokes"],
             names[r["winner"]] if r["winner"] else "", r["summary"]] for r in report["rallies"]]


def _rally_choices(report: dict) -> list[tuple[str, str]]:
    return [(f"Set {r['set']}, rally {r['rally']}", f"{r['set']}:{r['rally']}") for r in report["rallies"]]


# ---------------------------------------------------------------- handlers: engine + input values -> outputs


def on_show(engine: Engine, match_id: int | None) -> tuple[dict | None, str, list[list], go.Figure, gr.Dropdown, str]:
    """(report, its Markdown, the rally table, the score chart, the rally picker, the picked rally's
    summary) of the current match."""
    if match_id is None:
        return None, "Pick a match in the Analyze tab.", [], go.Figure(), gr.Dropdown(choices=[], value=None), ""
    with engine._index_lock:  # the index's connection is shared by the app's threads
        report = match_report(load_match(engine.index, match_id))
    choices = _rally_choices(report)
    first = choices[0][1] if choices else None
    return (report, to_markdown(report).split("\n## Rallies")[0], rally_table(report), score_figure(report),
            gr.Dropdown(choices=choices, value=first), on_rally(engine, report, first))


def on_rally(engine: Engine, report: dict | None, value: str | None) -> str:
    """The summary of the rally picked as "set:rally" (a chart click adds ":time")."""
    if not report or not value:
        return ""
    set_no, rally = (int(v) for v in str(value).split(":")[:2])
    found = next((r for r in report["rallies"] if (r["set"], r["rally"]) == (set_no, rally)), None)
    return f"**Set {set_no}** — {found['summary']}" if found else ""


def on_pick(engine: Engine, report: dict | None, value: str | None) -> tuple[str, str]:
    """A click on a chart point: the picker's value ("set:rally"), and that rally's summary."""
    if not report or not value:
        return gr.skip(), ""
    picked = ":".join(str(value).split(":")[:2])
    return picked, on_rally(engine, report, picked)


def on_select(engine: Engine, report: dict | None, evt: gr.SelectData) -> tuple[str, str]:
    """A click on a rally row: the picker set to it, and its summary."""
    r = (report or {}).get("rallies", [])[row_index(evt)]
    return on_pick(engine, report, f"{r['set']}:{r['rally']}")


def on_watch(engine: Engine, report: dict | None, value: str | None, current_name: str | None) -> tuple:
    """(the Analyze tab, its video, video name, seek payload): the picked rally played there, looped
    from its first stroke to its last."""
    if not report or not value:
        raise gr.Error("Pick a rally first (click a point of the chart or a row).")
    set_no, rally = (int(v) for v in str(value).split(":")[:2])
    r = next((r for r in report["rallies"] if (r["set"], r["rally"]) == (set_no, rally)), None)
    path, _ = engine.match_video(report["match"]["id"], set_no)
    if r is None or path is None or r["start_s"] is None:
        raise gr.Error(f"Set {set_no} of this match has no video to play.")
    payload = seek_payload(r["start_s"], path, SEEK_LEAD_S, r["end_s"], LEAD_OUT_S, loop=r["end_s"] is not None)
    return gr.Tabs(selected="analyze"), str(path) if path.name != current_name else gr.skip(), path.name, payload


def on_rewrite(engine: Engine, report: dict | None, value: str | None) -> tuple:
    """(report, rally table, picked rally's summary, note): the summaries in the loaded model's
    words, each kept only when it states the table's facts."""
    if not report:
        raise gr.Error("Pick a match first.")
    new = engine.rewrite_report(report)
    n = len(new["rallies"])
    note = (f"{new['rewritten']} of {n} rally summaries rewritten by the model; "
            f"{n - new['rewritten']} keep the table's words (their rewrite changed a number or a name).")
    return new, rally_table(new), on_rally(engine, new, value), note


def on_export(engine: Engine, report: dict | None, kind: str) -> str:
    """The path of the report as Markdown or HTML under the workspace's exports/."""
    if not report:
        raise gr.Error("Pick a match first.")
    fmt = EXPORTS[kind]
    path = engine.workspace.exports / f"report-{safe_name(report['match']['name'])}.{fmt}"
    path.write_text(render(report, fmt), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- layout and events


def create_summary_tab(engine: Engine, shared) -> None:
    with gr.Tab("Summary", id="summary") as tab:
        chart = gr.Plot(label="Score after each rally (click a point for its rally)", elem_id="summary-chart")
        with gr.Row():
            rally = gr.Dropdown([], label="Rally", elem_id="summary-rally", scale=1)
            rally_text = gr.Markdown(elem_id="summary-rally-text")
            watch = gr.Button("▶ Play this rally", elem_id="summary-watch", scale=0, min_width=150)
        rallies = gr.Dataframe(headers=COLUMNS, label="Rallies (click one)", interactive=False, wrap=True,
                               elem_id="summary-rallies", max_height=360)
        with gr.Row():
            rewrite = gr.Button("Rewrite the summaries with the loaded model", elem_id="summary-rewrite", scale=0,
                                min_width=300)
            rewrite_note = gr.Markdown(elem_id="summary-rewrite-note")
        report_md = gr.Markdown(elem_id="summary-report")
        with gr.Row():
            kind = gr.Radio(list(EXPORTS), value="Markdown", label="Export as", elem_id="summary-format")
            export = gr.Button("Export report", elem_id="summary-export")
        download = gr.File(label="Report", interactive=False, elem_id="summary-file", height=90)
        pick = gr.Textbox(elem_classes="sl-hidden", elem_id="summary-pick", show_label=False)
        report = gr.State(None)

    tab.select(bind(on_show, engine), shared.match, [report, report_md, rallies, chart, rally, rally_text])
    rally.input(bind(on_rally, engine), [report, rally], rally_text)
    pick.change(bind(on_pick, engine), [report, pick], [rally, rally_text])
    rallies.select(bind(on_select, engine), report, [rally, rally_text])
    export.click(bind(on_export, engine), [report, kind], download)
    rewrite.click(bind(on_rewrite, engine), [report, rally], [report, rallies, rally_text, rewrite_note])
    if shared.video is not None:  # the Analyze tab's player
        watch.click(bind(on_watch, engine), [report, rally, shared.video_name],
                    [shared.tabs, shared.video, shared.video_name, shared.seek]) \
            .then(None, shared.seek, None, js=SEEK_JS)
    shared.app_load_js.append(CHART_CLICK_JS)
