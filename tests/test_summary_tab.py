"""The Summary tab's handlers called directly, as Gradio calls them, on a real engine over the
ShuttleSet set of tests/data (set 1: two rallies), and the tab's events wired in the app."""
from __future__ import annotations

import inspect
import json

import gradio as gr
import pytest

from tests.test_tabs import HITS, video_match  # noqa: F401 - a match with a video, reused
from tests.test_ui_logic import _add, engine  # noqa: F401 - the engine fixture, reused
from ui import build_app, summary_tab
from ui.common import bind


def test_the_summary_shows_the_report_rallies_and_chart_of_the_match(engine):  # noqa: F811
    match_id = _add(engine)
    report, md, table, chart, picker, text = summary_tab.on_show(engine, match_id)
    assert md.startswith("# Kento MOMOTA CHOU Tien Chen") and "## Set 1" in md and "## Rallies" not in md
    assert [row[:5] for row in table] == [[1, 1, "0-0", 5, "CHOU Tien Chen"], [1, 5, "1-3", 24, "CHOU Tien Chen"]]
    assert table[1][5].endswith("Point CHOU Tien Chen, 1-4.")
    assert [tuple(c) for c in chart.data[0].customdata] == [(1, 1), (1, 5)]
    assert picker.value == "1:1" and [v for _, v in picker.choices] == ["1:1", "1:5"]
    assert text == f"**Set 1** — {table[0][5]}"
    # a chart click ("set:rally:time") and a table click pick that rally
    picked, text = summary_tab.on_pick(engine, report, "1:5:1712")
    assert picked == "1:5" and text == f"**Set 1** — {table[1][5]}"
    picked, text = summary_tab.on_select(engine, report, gr.SelectData(None, {"index": [0, 5], "value": ""}))
    assert picked == "1:1" and text.endswith(table[0][5])
    assert summary_tab.on_rally(engine, report, "2:1") == ""
    assert summary_tab.on_show(engine, None)[:3] == (None, "Pick a match in the Analyze tab.", [])


def test_a_picked_rally_plays_whole_in_the_analyze_player(engine, video_match):  # noqa: F811
    report = summary_tab.on_show(engine, video_match)[0]
    tabs, video, name, payload = summary_tab.on_watch(engine, report, "1:2:1712", None)
    seek = json.loads(payload)
    assert tabs.selected == "analyze" and video.endswith(name) and seek["src"] == name
    first, last = HITS[4][2] / 25, HITS[6][2] / 25  # rally 2's first and last hit (25 fps)
    assert seek["t"] < first < last < seek["end"]  # looped from before its first stroke to after its last
    assert summary_tab.on_watch(engine, report, "1:2", name)[1] == gr.skip()  # the video is already loaded
    with pytest.raises(gr.Error, match="Pick a rally first"):
        summary_tab.on_watch(engine, report, "", name)
    no_video = summary_tab.on_show(engine, _add(engine))[0]
    with pytest.raises(gr.Error, match="no video"):
        summary_tab.on_watch(engine, no_video, "1:1", name)


def test_rewriting_needs_a_model_and_keeps_the_table_s_words_where_the_model_changes_a_fact(engine, tiny_base):  # noqa: F811
    report = summary_tab.on_show(engine, _add(engine))[0]
    with pytest.raises(gr.Error, match="load a model"):
        bind(summary_tab.on_rewrite, engine)(report, "1:1")
    engine.load(str(tiny_base), trusted=True)  # a random model: its words never carry the facts
    new, table, text, note = summary_tab.on_rewrite(engine, report, "1:1")
    assert note.startswith(f"0 of {len(report['rallies'])} rally summaries rewritten")
    assert table == summary_tab.rally_table(report) and text == summary_tab.on_rally(engine, report, "1:1")
    assert {r["summary_source"] for r in new["rallies"]} == {"table"}


@pytest.mark.parametrize("kind", list(summary_tab.EXPORTS))
def test_the_report_exports_under_the_workspace(engine, kind):  # noqa: F811
    report = summary_tab.on_show(engine, _add(engine))[0]
    path = engine.workspace.resolve(summary_tab.on_export(engine, report, kind))  # refused outside the workspace
    assert path.parent == engine.workspace.exports
    assert "Point CHOU Tien Chen, 1-4." in path.read_text(encoding="utf-8")
    with pytest.raises(gr.Error, match="Pick a match first"):
        summary_tab.on_export(engine, None, kind)


def test_the_summary_tab_wires_each_handler_with_its_inputs(engine):  # noqa: F811
    fns = list(build_app(engine).fns.values())

    def calling(handler):
        return [f for f in fns if getattr(getattr(f.fn, "__wrapped__", None), "func", None) is handler]

    for handler, outputs in ((summary_tab.on_show, 6), (summary_tab.on_rally, 1), (summary_tab.on_pick, 2),
                             (summary_tab.on_select, 2), (summary_tab.on_export, 1), (summary_tab.on_watch, 4),
                             (summary_tab.on_rewrite, 4)):
        assert len(calling(handler)) == 1, handler.__name__
        fn = calling(handler)[0]
        takes = [p for p in inspect.signature(handler).parameters.values() if p.annotation != "gr.SelectData"]
        assert len(fn.inputs) == len(takes) - 1 and len(fn.outputs) == outputs, handler.__name__
