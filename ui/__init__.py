"""The Gradio app: one tab per module, each thin over core.engine."""
from __future__ import annotations

import gradio as gr

from core.engine import Engine
from ui.model_tab import create_model_tab


def build_app(engine: Engine) -> gr.Blocks:
    with gr.Blocks(title="Shuttle Lens") as app:
        gr.Markdown("# Shuttle Lens\nAsk a badminton match video in plain words.")
        with gr.Tabs():
            create_model_tab(engine)
    return app
