"""Model tab: load a base checkpoint or trained adapters, see what is loaded and the memory it
takes, caption one stroke."""
from __future__ import annotations

import gradio as gr

from core.config import PRECISIONS
from core.engine import Engine
from ui.common import bind, said


def memory_text(engine: Engine) -> str:
    m = engine.memory()
    if m["device"] is None:
        return ""
    text = f"Weights: **{m['weights_mib']:.1f} MiB** on {m['device']}"
    if m["accelerator_mib"] is not None:
        text += f"; GPU memory allocated: {m['accelerator_mib']:.0f} MiB"
    return text


def on_load(engine: Engine, src: str, prec: str, dev: str, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
    """Load a model: (what is loaded, the memory it takes)."""
    progress(0.1, desc="loading the model")
    return engine.load(src, prec, dev), memory_text(engine)


def on_model_tick(engine: Engine) -> tuple:
    """While the app's model loads in the background: (status, memory, model box, timer); once it is
    there (or failed), what is loaded, and the timer stops."""
    if engine.model is None and engine.demo.running and engine.demo.what == "loading the model":
        return "Loading the model…", gr.skip(), gr.skip(), gr.skip()
    return engine.describe(), memory_text(engine), engine.source or "", gr.Timer(active=False)


def on_caption(engine: Engine, path: str | None, hit: float | None) -> str:
    """The loaded model's caption of the stroke hit at frame `hit` of an uploaded video."""
    if not path:
        raise gr.Error("Upload a video first.")
    return engine.caption(path, [int(hit or 0)])[int(hit or 0)]


def create_model_tab(engine: Engine, shared=None) -> gr.Markdown:
    with gr.Tab("Model", id="model"):
        status = gr.Markdown(engine.describe(), elem_id="model-status")
        memory = gr.Markdown(memory_text(engine), elem_id="model-memory")
        with gr.Row():
            source = gr.Textbox(label="Model: adapter folder, base folder or Hugging Face id",
                                value=engine.source or "", scale=3)
            precision = gr.Dropdown(list(PRECISIONS), value=engine.precision, label="Precision")
            device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device", allow_custom_value=True)
        load = gr.Button("Load", variant="primary")
        gr.Markdown("### Caption one stroke")
        with gr.Row():
            video = gr.Video(label="Stroke video", sources=["upload"])
            frame = gr.Number(label="Hit frame", value=7, precision=0, minimum=0)
        run = gr.Button("Caption")
        caption = gr.Textbox(label="Caption", interactive=False, elem_id="stroke-caption")

        loading = gr.Timer(1.0)  # the app's model loads while the page serves
    load.click(bind(said(on_load, 2, note=0), engine), [source, precision, device], [status, memory])
    loading.tick(bind(on_model_tick, engine), None, [status, memory, source, loading])
    if shared is not None:  # a page opened after the model loaded says so at once
        shared.on_load.append((bind(on_model_tick, engine), None, [status, memory, source, loading]))
    run.click(bind(on_caption, engine), [video, frame], caption)
    if shared is not None:
        shared.model_status = status
    return status
