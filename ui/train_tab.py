"""Train tab: fine-tune the loaded model on the current match's captions in one click, or launch
either recipe on a data folder; each run is its own process: watch its log, progress and loss
live, stop it, list every run with its final metrics, and use a run's adapters (which captions
the current match again)."""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go

from core.config import EXPERIMENT_RANKS, LLM_LORA_PARTS, QFORMER_LORA_PARTS, LoraSettings
from core.engine import FINETUNE_STEPS, Engine
from core.runner import RunStatus
from train.config import STAGE_CONFIGS, option_defaults, run_config
from train.qa import questions_of
from ui.common import bind, progress_callback, progress_html, said
from ui.figures import loss_figure

RUN_COLUMNS = ["run", "stage", "state", "step", "loss", "metrics", "started"]
PRESETS = [f"{e} (r={r})" for e, r in EXPERIMENT_RANKS.items()] + ["custom"]
NO_LLM = "none"
LOG_LINES = 16  # the log box's height, and the lines of the run's log it shows


def stage_defaults(stage: int) -> dict:
    """The widgets whose starting value differs between the stages, at that stage's defaults."""
    d = option_defaults(stage)
    return {"lr": d["lr"], "llm_part": d["llm_part"] or NO_LLM}


def run_options(stage: int, preset: str, qparts, qr, qalpha, llm_part: str, llm_r, negatives, epochs, lr,
                max_steps, base: str | None, tiny: bool) -> dict:
    """The tab's widgets as the recipe's options (train/config.py field names); an empty number
    leaves the option at the recipe's default."""
    options = {"tiny": bool(tiny), "num_workers": 0}
    for name, value in (("epochs", epochs), ("lr", lr), ("max_steps", max_steps), ("llm_r", llm_r)):
        if value is not None:
            options[name] = value
    if llm_part != NO_LLM:
        options["llm_part"] = llm_part
    if base:
        options["base"] = base
    if stage == 1 and preset == "custom":
        options.update(experiment=None, qformer_parts=tuple(qparts), qformer_r=qr, qformer_alpha=qalpha)
    elif stage == 1:
        options["experiment"] = int(preset.split()[0])
    elif negatives:  # 0: the data's own mix
        options["negative_share"] = negatives
    return options


def runs_table(statuses: list[RunStatus]) -> list[list]:
    out = []
    for s in statuses:
        stage = s.name.split("-")[0].replace("stage", "") if s.name.startswith("stage") else ""
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in s.last.items() if k != "loss")
        if not metrics and s.state == "finished":
            metrics = "not evaluated"
        loss = s.last.get("loss")
        out.append([s.name, stage, s.state, s.step, round(loss, 4) if isinstance(loss, float) else loss,
                    metrics, s.started or ""])
    return out


# ---------------------------------------------------------------- handlers: engine + input values -> outputs


def run_names(engine: Engine) -> list[str]:
    """Every run's name, newest first."""
    return [s.name for s in engine.runner.list_runs()]


def on_stage(stage: int) -> tuple[float, str]:
    """Another stage picked: (learning rate, LLM part) at that stage's defaults."""
    d = stage_defaults(int(stage))
    return d["lr"], d["llm_part"]


def on_start(engine: Engine, stage: int, preset: str, name: str, qparts: list[str], qr: float | None,
             qalpha: float | None, llm_part: str, llm_r: float | None, data: str, init: str | None,
             negatives: float | None, epochs: float | None, lr: float | None, max_steps: float | None,
             base: str | None, tiny: bool) -> tuple[str, gr.Timer, str]:
    """Start a run from the tab's fields: (its name, the polling timer switched on, a status line).
    An empty base trains on the loaded model's base (unless `tiny`)."""
    base = (base or "").strip() or None
    if base is None and not tiny and engine.model is not None:
        base = str(engine.model.settings.base)
    options = run_options(int(stage), preset, qparts, qr, qalpha, llm_part, llm_r, negatives, epochs, lr,
                          max_steps, base, tiny)
    run = engine.start_training(int(stage), data, name or "", options, init_run=init, run_config=run_config)
    return run, gr.Timer(active=True), f"Started **{run}**."


def run_view(engine: Engine, st: RunStatus) -> tuple[str, str, go.Figure]:
    """(status line, newest log lines, loss figure) of the run whose status is `st`."""
    return (st.summary(), engine.runner.log_tail(st.name, LOG_LINES),
            loss_figure(engine.runner.metrics(st.name), title=st.name))


def on_tick(engine: Engine, name: str | None) -> tuple:
    """The timer's poll of the current run: (status, progress bar, log, figure, runs table, run picker,
    timer); the table and picker change, and the timer stops, once the run is no longer running."""
    if not name:
        return (*[gr.skip()] * 6, gr.Timer(active=False))
    st = engine.runner.status(name)
    done = st.state != "running"
    summary, log, figure = run_view(engine, st)
    table = runs_table(engine.runner.list_runs()) if done else gr.skip()
    pick = gr.Dropdown(choices=run_names(engine), value=name) if done else gr.skip()
    return summary, progress_html(st.progress, st.state), log, figure, table, pick, gr.Timer(active=not done)


def on_stop(engine: Engine, name: str | None) -> str:
    """Stop the current run (any running one without a name): what happened."""
    return engine.runner.stop(name)


def on_refresh(engine: Engine) -> tuple[list[list], gr.Dropdown, gr.Dropdown]:
    """(runs table, run picker set to the newest run, the stage-2 start picker) from the runs folder."""
    names = run_names(engine)
    return (runs_table(engine.runner.list_runs()), gr.Dropdown(choices=names, value=names[0] if names else None),
            gr.Dropdown(choices=names))


def on_run_pick(engine: Engine, name: str | None) -> tuple:
    """A run picked: run_view's outputs, nothing changed without a name."""
    if not name:
        return gr.skip(), gr.skip(), gr.skip()
    return run_view(engine, engine.runner.status(name))


def on_finetune(engine: Engine, match_id: int | None, steps: float | None,
                progress: gr.Progress = gr.Progress()) -> tuple[str, gr.Timer, str]:
    """Fine-tune the loaded model's captioner on the current match's corrected (else annotated)
    captions: (the run, the polling timer switched on, a status line)."""
    return _finetune(engine, match_id, steps, 1, progress)


def on_finetune_questions(engine: Engine, match_id: int | None, steps: float | None,
                          progress: gr.Progress = gr.Progress()) -> tuple[str, gr.Timer, str]:
    """Fine-tune the loaded model's answers (stage 2) on questions about the current match's rallies,
    made from the same captions: (the run, the polling timer switched on, a status line)."""
    return _finetune(engine, match_id, steps, 2, progress)


def _finetune(engine: Engine, match_id: int | None, steps: float | None, stage: int, progress) -> tuple:
    if match_id is None:
        raise gr.Error("Pick a match in the Analyze tab first.")
    steps = int(steps or FINETUNE_STEPS)
    run, counts = engine.start_finetune(int(match_id), steps, run_config=run_config, stage=stage,
                                        questions=questions_of, progress=progress_callback(progress))
    on = (f"{counts['questions']} questions about {counts['clips']} strokes" if stage == 2
          else f"{counts['clips']} strokes")
    return run, gr.Timer(active=True), (f"Started **{run}**: {steps} steps on {on} ({counts['corrected']} "
                                        f"corrected, {counts['annotated']} annotated captions).")


def on_use(engine: Engine, name: str | None, match_id: int | None = None,
           progress: gr.Progress = gr.Progress()) -> str:
    """Load the picked run's adapters as the app's model and caption the current match with it."""
    if not name:
        raise gr.Error("Choose a run.")
    engine.use_run(name)
    note = f"Using **{name}**."
    if match_id is not None:
        n = engine.recaption_match(int(match_id), progress=progress_callback(progress))
        note += f" Captioned the {n} strokes of this match with it (Strokes tab)." if n else ""
    return note


# ---------------------------------------------------------------- layout and events


def create_train_tab(engine: Engine, shared) -> None:
    default_data = str(engine.workspace.data / "demo") if engine.workspace else ""
    s1, s2, lora = option_defaults(1), option_defaults(2), LoraSettings()
    with gr.Tab("Train", id="train"):
        with gr.Group(elem_id="finetune-box"):
            gr.Markdown("### Fine-tune the loaded model on this match\nTeaches the loaded model's stroke captions "
                        "from this match's strokes: the captions you corrected in the Strokes tab, and the "
                        "annotated ones. The clips are cut from the match video. The second button teaches its "
                        "answers to questions about several strokes of a rally (\"when does the bottom player "
                        "smash?\"), made from the same captions. Then pick the run below and press *Use this "
                        "model*.")
            with gr.Row():
                ft_steps = gr.Number(FINETUNE_STEPS, label="Training steps", minimum=1, maximum=10_000, precision=0,
                                     elem_id="finetune-steps", scale=1)
                ft_start = gr.Button("Fine-tune the captions on this match", variant="primary",
                                     elem_id="finetune-start", scale=2)
                ft_questions = gr.Button("Fine-tune question answering on this match (stage 2)",
                                         elem_id="finetune-questions", scale=2)
        gr.Markdown("### Train from a data folder\nEither stage of the recipes on a folder that "
                    "`python -m train.build_dataset` wrote, with every option.")
        with gr.Row():
            stage = gr.Radio(list(STAGE_CONFIGS), value=1, label="Stage",
                             info="1: stroke captions, 2: questions over strokes", elem_id="train-stage")
            preset = gr.Dropdown(PRESETS, value=PRESETS[list(EXPERIMENT_RANKS).index(s1["experiment"])],
                                 label="Experiment preset (Q-Former cross-attention LoRA)")
            run_name = gr.Textbox(label="Run name (optional)", elem_id="run-name")
        with gr.Accordion("LoRA settings (custom)", open=False):
            with gr.Row():
                qparts = gr.CheckboxGroup(list(QFORMER_LORA_PARTS),
                                          value=list(LoraSettings.experiment(s1["experiment"]).qformer_parts),
                                          label="Q-Former parts")
                qr = gr.Number(lora.qformer_r, label="Q-Former rank", precision=0)
                qalpha = gr.Number(lora.qformer_alpha, label="Q-Former alpha", precision=0)
                llm_part = gr.Dropdown([NO_LLM, *LLM_LORA_PARTS], value=stage_defaults(1)["llm_part"],
                                       label="LLM part")
                llm_r = gr.Number(s1["llm_r"], label="LLM rank", precision=0)
        with gr.Row():
            data = gr.Textbox(default_data, label="Data folder (from train.build_dataset, inside the workspace)",
                              elem_id="train-data", scale=3)
            init = gr.Dropdown([], label="Stage 2 starts from run", allow_custom_value=False, elem_id="train-init")
            negatives = gr.Number(s2["negative_share"] or 0, label="Stage 2: impossible-question share (0: the data's "
                                  "own mix)", step=0.05, elem_id="negative-share")
        with gr.Row():
            epochs = gr.Number(s1["epochs"], label="Epochs", precision=0)
            lr = gr.Number(stage_defaults(1)["lr"], label="Learning rate", elem_id="train-lr")
            max_steps = gr.Number(s1["max_steps"], label="Max steps (0: all)", precision=0, elem_id="max-steps")
            base = gr.Textbox(s1["base"] or "", label="Base model (HF id or folder; empty: the loaded model's base)")
            tiny = gr.Checkbox(s1["tiny"], label="Tiny random base (smoke test)", elem_id="tiny")
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="train-start")
            stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        status = gr.Markdown("No run started.", elem_id="train-status")
        progress = gr.HTML(elem_id="train-progress")
        with gr.Row():
            log_box = gr.Textbox(label="Log (newest lines)", lines=LOG_LINES, max_lines=LOG_LINES,
                                 autoscroll=True, elem_id="train-log")
            plot = gr.Plot(label="Loss and metrics", elem_id="train-plot")
        gr.Markdown("### Runs")
        runs = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, elem_id="runs-table")
        with gr.Row():
            run_pick = gr.Dropdown([], label="Run", elem_id="run-pick", scale=3)
            use = gr.Button("Use this model", elem_id="use-run")
            refresh = gr.Button("↻ Refresh runs")
        use_status = gr.Markdown(elem_id="use-status")
        current = gr.State(None)
        timer = gr.Timer(1.0, active=False)

    for button, handler in ((ft_start, on_finetune), (ft_questions, on_finetune_questions)):
        button.click(bind(said(handler, 3, note=2), engine), [shared.match, ft_steps], [current, timer, status])
    stage.change(on_stage, stage, [lr, llm_part])
    start.click(bind(said(on_start, 3, note=2), engine),
                [stage, preset, run_name, qparts, qr, qalpha, llm_part, llm_r, data, init, negatives, epochs, lr,
                 max_steps, base, tiny], [current, timer, status])
    timer.tick(bind(on_tick, engine), current, [status, progress, log_box, plot, runs, run_pick, timer])
    stop.click(bind(on_stop, engine), current, status)
    refresh.click(bind(on_refresh, engine), None, [runs, run_pick, init])
    run_pick.input(bind(on_run_pick, engine), run_pick, [status, log_box, plot])
    use.click(bind(said(on_use, 1, note=0), engine), [run_pick, shared.match], use_status).then(engine.describe, None,
                                                                               shared.model_status)
    shared.on_load.append((bind(on_refresh, engine), None, [runs, run_pick, init]))
