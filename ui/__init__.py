"""The Gradio app: one tab per module, each thin over core.engine."""
from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from core.engine import Engine
from ui.analyze_tab import create_analyze_tab
from ui.common import CSS
from ui.model_tab import create_model_tab
from ui.stats_tab import create_stats_tab
from ui.strokes_tab import create_strokes_tab
from ui.summary_tab import create_summary_tab
from ui.train_tab import create_train_tab


@dataclass
class Shared:
    """State the tabs share: the current match and question results; what runs on page load."""

    match: gr.State
    results: gr.State
    first_match: int | None = None
    first_video: str | None = None
    model_status: gr.Markdown | None = None
    on_load: list = field(default_factory=list)  # (fn, inputs, outputs)
    app_load_js: list = field(default_factory=list)
    demo_pending: bool = False
    # the Analyze tab's player, for other tabs that play a moment there ("Play this rally")
    tabs: gr.Tabs | None = None
    video: gr.Video | None = None
    video_name: gr.State | None = None
    seek: gr.Textbox | None = None


def build_app(engine: Engine, demo_pending: bool = False) -> gr.Blocks:
    """The app's page; `demo_pending`: the demo match is about to be indexed in the background
    (the page then shows its progress and picks it once it is there)."""
    with gr.Blocks(title="Shuttle Lens") as app:
        gr.Markdown("# Shuttle Lens\nAsk a badminton match video in plain words; jump to every stroke that matches.")
        first_match = first_video = None
        if engine.workspace is not None:
            choices = engine.match_choices()
            first_match = choices[0][1] if choices else None
            path, _ = engine.match_video(first_match)
            first_video = str(path) if path else None
        shared = Shared(gr.State(first_match), gr.State([]), first_match, first_video, demo_pending=demo_pending)
        with gr.Tabs() as shared.tabs:
            if engine.workspace is not None:
                create_analyze_tab(engine, shared)
                create_strokes_tab(engine, shared)
            create_model_tab(engine, shared)
            if engine.workspace is not None:
                create_train_tab(engine, shared)
                create_stats_tab(engine, shared)
                create_summary_tab(engine, shared)
        for fn, inputs, outputs in shared.on_load:
            app.load(fn, inputs, outputs)
        for js in shared.app_load_js:
            app.load(None, None, None, js=js)
    return app


def launch_kwargs(engine: Engine, host: str, port: int, max_file_size: str) -> dict:
    """launch(): listen on `host` only, no share link, files served only from the workspace and assets."""
    allowed = [str(p) for p in engine.workspace.allowed] if engine.workspace is not None else []
    return dict(server_name=host, server_port=port, share=False, allowed_paths=allowed,
                max_file_size=max_file_size, css=CSS, theme=gr.themes.Soft(), show_error=True)
