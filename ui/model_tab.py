"""Model tab: load a base checkpoint or trained adapters, see what is loaded, caption a stroke."""
from __future__ import annotations

import gradio as gr

from core.config import PRECISIONS
from core.engine import Engine
from core.loader import ModelLoadError
from core.video import VideoError


def create_model_tab(engine: Engine) -> None:
    with gr.Tab("Model"):
        status = gr.Markdown(engine.describe(), elem_id="model-status")
        with gr.Row():
            source = gr.Textbox(label="Model: adapter folder, base folder or Hugging Face id",
                                value=engine.source or "", scale=3)
            precision = gr.Dropdown(list(PRECISIONS), value="fp32", label="Precision")
            device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device")
        load = gr.Button("Load", variant="primary")
        gr.Markdown("### Caption one stroke")
        with gr.Row():
            video = gr.Video(label="Match video", sources=["upload"])
            frame = gr.Number(label="Hit frame", value=7, precision=0, minimum=0)
        run = gr.Button("Caption")
        caption = gr.Textbox(label="Caption", interactive=False, elem_id="stroke-caption")

    def on_load(src: str, prec: str, dev: str) -> str:
        try:
            return engine.load(src, prec, dev)
        except (ModelLoadError, ValueError, RuntimeError) as err:
            raise gr.Error(str(err)) from None

    def on_caption(path: str | None, hit: float | None) -> str:
        if not path:
            raise gr.Error("Upload a video first.")
        try:
            return engine.caption(path, [int(hit or 0)])[int(hit or 0)]
        except (ModelLoadError, VideoError) as err:
            raise gr.Error(str(err)) from None

    load.click(on_load, [source, precision, device], status)
    run.click(on_caption, [video, frame], caption)
