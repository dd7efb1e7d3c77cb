"""The app's logic without a browser: workspace path checks, the training-run manager, the
Plotly figures, and the engine over a small index (no model, no video decoding)."""
from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest
import yaml

from core.engine import Engine, EngineError
from core.runner import REQUEST_FILE, RunError, Runner, latest_metrics, read_metrics, tail
from core.store import UNCERTAIN_BELOW, is_uncertain
from core.workspace import PathNotAllowed, Workspace, is_url, safe_name
from train.config import Stage1Config, Stage2Config, config_from_file, run_config
from ui.common import confidence_cell
from ui.figures import counts_figure, court_figure, loss_figure, timeline_figure

SET_CSV = Path(__file__).parent / "data/shuttleset/Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals/set1.csv"


# ---------------------------------------------------------------- workspace


def test_workspace_resolves_inside_and_refuses_outside(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (ws.root / "uploads" / "a.csv").write_text("x")
    assert ws.resolve("uploads/a.csv") == ws.root / "uploads" / "a.csv"
    assert ws.resolve(str(ws.root / "uploads" / "a.csv")).is_file()
    for bad in ("../outside.csv", "/etc/passwd", "uploads/../../x", "~/.ssh/id_rsa"):
        with pytest.raises(PathNotAllowed):
            ws.resolve(bad, must_exist=False)
    with pytest.raises(PathNotAllowed, match="no such"):
        ws.resolve("uploads/missing.csv")
    with pytest.raises(PathNotAllowed):
        ws.resolve("")


def test_workspace_refuses_symlink_escape_and_urls(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "secret.txt").write_text("s")
    (ws.root / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PathNotAllowed):
        ws.resolve("link.txt")
    for url in ("http://example.com/a.mp4", "https://x/y.csv", "file:///etc/passwd", "ftp://h/f", "//host/share"):
        assert is_url(url)
        with pytest.raises(PathNotAllowed, match="URL"):
            ws.resolve(url, must_exist=False)
    assert not is_url("uploads/a.csv")


def test_assets_and_extra_folders_are_readable(tmp_path):
    extra = tmp_path / "demo"
    extra.mkdir()
    (extra / "m.csv").write_text("x")
    ws = Workspace(tmp_path / "ws", extra_allowed=(extra,))
    assert ws.resolve(str(extra / "m.csv")).is_file()
    assert ws.resolve(str(ws.assets), must_exist=False) == ws.assets


def test_safe_names_and_fresh_folders(tmp_path):
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("  ") == "item"
    ws = Workspace(tmp_path / "ws")
    a, b = ws.upload_dir("my match"), ws.upload_dir("my match")
    assert a != b and a.parent == ws.uploads == b.parent
    run = ws.new_run_dir(1, "lr 1e-4")
    assert run.parent == ws.runs and run.name.startswith("stage1-") and "lr_1e-4" in run.name


# ---------------------------------------------------------------- runner


def _request(run: Path) -> dict:
    """The options a run was started with, as its recipe reads them (--config RUN/request.yaml)."""
    return yaml.safe_load((run / REQUEST_FILE).read_text())


def test_runs_start_from_the_recipe_config_the_options_validate_into(tmp_path):
    py = _fake_recipe(tmp_path, "print('argv', *args, flush=True)\n")
    runner = Runner(tmp_path / "runs", python=py)
    run = runner.start(1, {"data": "d", "out": str(tmp_path / "runs" / "s1"), "epochs": 2, "lr": 1e-4,
                           "max_steps": 2, "experiment": 3, "tiny": True, "num_workers": 0, "progress": False},
                       run_config)
    assert _wait(lambda: runner.status(run.name).state != "running")
    assert f"$ -m train.stage1 --config {run / REQUEST_FILE}\nargv --config" in runner.log_tail(run.name)
    cfg = config_from_file(run / REQUEST_FILE, Stage1Config)  # what the recipe itself reads
    assert (cfg.data, cfg.epochs, cfg.lr, cfg.max_steps, cfg.experiment, cfg.tiny, cfg.num_workers, cfg.progress) == \
        ("d", 2, 1e-4, 2, 3, True, 0, False)
    assert cfg.batch_size == Stage1Config().batch_size  # options not given keep the recipe's defaults
    assert runner.status(run.name).epochs == 2

    s2 = runner.start(2, {"data": "d", "out": str(tmp_path / "runs" / "s2"), "init": "runs/s1", "llm_part": "attn",
                          "llm_r": 8}, run_config)
    assert _wait(lambda: runner.status(s2.name).state != "running")
    assert "train.stage2" in runner.log_tail(s2.name)
    assert (_request(s2)["init"], _request(s2)["llm_part"], _request(s2)["llm_r"]) == ("runs/s1", "attn", 8)
    assert _request(s2)["negative_share"] is None  # the data's own mix unless asked
    s3 = runner.start(2, {"data": "d", "out": str(tmp_path / "runs" / "s3"), "init": "runs/s1",
                          "negative_share": 0.45}, run_config)
    assert _request(s3)["negative_share"] == 0.45


def test_bad_options_are_refused_with_the_option_named_before_a_process_starts(tmp_path):
    runner = Runner(tmp_path / "runs", python=_fake_recipe(tmp_path, "raise SystemExit('started')\n"))
    out = {"data": "d", "out": str(tmp_path / "runs" / "bad")}
    for share in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(RunError, match="negative_share must be between 0 and 1"):
            runner.start(2, {**out, "init": "runs/s1", "negative_share": share}, run_config)
    with pytest.raises(RunError, match="not an option of stage 1: 'negative_share'"):
        runner.start(1, {**out, "negative_share": 0.4}, run_config)
    with pytest.raises(RunError, match="epochs must be > 0"):
        runner.start(1, {**out, "epochs": 0}, run_config)
    with pytest.raises(RunError, match="--base or --tiny, not both"):
        runner.start(1, {**out, "base": "x", "tiny": True}, run_config)
    with pytest.raises(RunError, match="Q-Former LoRA part"):
        runner.start(1, {**out, "experiment": None, "qformer_parts": ("cross_attn", "nope")}, run_config)
    with pytest.raises(RunError, match="stage must be one of"):
        runner.start(3, out, run_config)
    assert not (tmp_path / "runs" / "bad").exists() and runner.active() is None


def test_train_tab_options_are_the_recipe_options(tmp_path):
    from ui.train_tab import PRESETS, run_options, stage_defaults

    assert PRESETS[:4] == ["1 (r=1)", "2 (r=2)", "3 (r=4)", "4 (r=8)"]
    assert stage_defaults(1) == {"lr": Stage1Config.lr, "llm_part": "none"}
    assert stage_defaults(2) == {"lr": Stage2Config.lr, "llm_part": Stage2Config.llm_part}
    widgets = dict(qparts=["cross_attn"], qr=4, qalpha=8, llm_part="none", llm_r=4, negatives=0.4, epochs=2,
                   lr=1e-4, max_steps=None, base=None, tiny=True)
    s1 = run_options(1, "3 (r=4)", **widgets)
    assert s1 == {"tiny": True, "num_workers": 0, "epochs": 2, "lr": 1e-4, "llm_r": 4, "experiment": 3}
    assert run_config(1, {**s1, "data": "d", "out": "o"}).lora_settings().qformer_r == 4
    custom = run_options(1, "custom", **{**widgets, "qparts": ["cross_attn", "ffn"], "qr": 2})
    assert run_config(1, custom).lora_settings().qformer_parts == ("cross_attn", "ffn")
    s2 = run_options(2, "1 (r=1)", **{**widgets, "llm_part": "all", "tiny": False})
    assert s2["negative_share"] == 0.4 and "experiment" not in s2
    assert "negative_share" not in run_options(2, "1 (r=1)", **{**widgets, "negatives": 0})


def test_engine_checks_paths_and_the_stage1_run_then_starts_from_a_validated_config(engine, tmp_path):
    ws = engine.workspace
    (ws.data / "d").mkdir(parents=True)
    (ws.data / "d" / "qa_train.json").write_text("[]")
    engine.runner = Runner(ws.runs, python=_fake_recipe(tmp_path, "print('started', flush=True)\n"))
    with pytest.raises(EngineError, match="stage-1 run"):
        engine.start_training(2, "data/d", options={"max_steps": 2}, run_config=run_config)
    with pytest.raises(EngineError, match="option check"):
        engine.start_training(1, "data/d")
    first = engine.start_training(1, "data/d", "smoke", {"max_steps": 2, "tiny": True, "base": "ignored"},
                                  run_config=run_config)
    assert _wait(lambda: engine.runner.status(first).state != "running")
    request = _request(ws.runs / first)
    assert request["data"] == str(ws.data / "d") and request["progress"] is False and request["base"] is None
    with pytest.raises(RunError, match="negative_share"):
        engine.start_training(2, "data/d", options={"negative_share": 1.5}, init_run=first, run_config=run_config)
    assert [d.name for d in ws.runs.iterdir()] == [first]  # nothing started, no run folder
    second = engine.start_training(2, "data/d", options={"negative_share": 0.4}, init_run=first,
                                   run_config=run_config)
    assert _request(ws.runs / second)["init"] == str(ws.runs / first)


def test_metrics_reader_skips_a_half_written_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 1e-5}\n{"step": 2, "loss": 1.5, '
                                            '"val_cider": 0.3}\n{"step": 3, "lo')
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert latest_metrics(rows) == {"loss": 1.5, "val_cider": 0.3}
    (tmp_path / "log").write_text("a\nb\r50%\rdone\nc\n")
    assert tail(tmp_path / "log", 2) == "done\nc"


def _fake_recipe(tmp_path: Path, body: str) -> str:
    """A stand-in python that runs `body` for any `-m train.stageN ...` command line."""
    script = tmp_path / "fake.py"
    script.write_text("import json, sys, time, pathlib, yaml\nargs = sys.argv[1:]\n"
                      "out = pathlib.Path(yaml.safe_load(open(args[args.index('--config') + 1]))['out'])\n" + body)
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nshift 2\nexec {sys.executable} {script} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def _wait(cond, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_runner_runs_logs_and_reads_metrics(tmp_path):
    py = _fake_recipe(tmp_path, (
        "print('training', flush=True)\n"
        "with open(out / 'metrics.jsonl', 'a') as f:\n"
        "    f.write(json.dumps({'step': 1, 'epoch': 0.5, 'loss': 3.0}) + '\\n')\n"
        "    f.write(json.dumps({'step': 2, 'epoch': 1.0, 'loss': 2.0, 'val_cider': 0.1}) + '\\n')\n"
        "(out / 'final').mkdir(); (out / 'final' / 'manifest.json').write_text('{}')\n"))
    runner = Runner(tmp_path / "runs", python=py)
    run = runner.start(1, {"data": "d", "out": str(tmp_path / "runs" / "r1"), "max_steps": 2}, run_config)
    assert _wait(lambda: runner.status(run.name).state != "running")
    st = runner.status(run.name)
    assert st.state == "finished" and st.step == 2 and st.total_steps == 2 and st.progress == 1.0
    assert st.last == {"loss": 2.0, "val_cider": 0.1}
    assert "training" in runner.log_tail(run.name)
    assert runner.adapters(run.name) == run / "final"
    assert [s.name for s in runner.list_runs()] == ["r1"]
    with pytest.raises(RunError, match="already exists"):
        runner.start(1, {"data": "d", "out": str(run)}, run_config)


def test_runner_survives_a_failing_run_and_stops_a_running_one(tmp_path):
    runner = Runner(tmp_path / "runs", python=_fake_recipe(tmp_path, "raise SystemExit('bad data')\n"))
    bad = runner.start(1, {"data": "d", "out": str(tmp_path / "runs" / "bad")}, run_config)
    assert _wait(lambda: runner.status(bad.name).state != "running")
    assert runner.status(bad.name).state == "failed" and "bad data" in runner.log_tail(bad.name)
    with pytest.raises(RunError, match="no saved adapters"):
        runner.adapters(bad.name)

    runner = Runner(tmp_path / "runs", python=_fake_recipe(tmp_path, "time.sleep(60)\n"))
    slow = runner.start(1, {"data": "d", "out": str(tmp_path / "runs" / "slow")}, run_config)
    assert runner.active() == "slow"
    with pytest.raises(RunError, match="still going"):
        runner.start(1, {"data": "d", "out": str(tmp_path / "runs" / "other")}, run_config)
    assert "Stopped" in runner.stop()
    assert _wait(lambda: runner.status(slow.name).state == "stopped")
    assert runner.active() is None
    with pytest.raises(RunError):
        runner.run_dir("../bad")


# ---------------------------------------------------------------- figures


def _rows():
    return [dict(start_s=1.0, end_s=1.6, time_s=1.3, player_name="A. Player", stroke="smash", side="upper",
                 caption="upper player hits a smash in the backcourt", set_no=1, rally=1, ball_round=3,
                 hit_m=(1.0, 2.0), landing_m=(4.0, 11.0)),
            dict(start_s=5.0, end_s=5.6, time_s=5.3, player_name="B. Player", stroke="clear", side="bottom",
                 caption="bottom player hits a clear in the backcourt", set_no=1, rally=2, ball_round=1,
                 hit_m=None, landing_m=None)]


def test_timeline_has_a_lane_per_player_and_row_indices():
    fig = timeline_figure(_rows(), "player")
    marks = [t for t in fig.data if t.mode == "markers"]
    assert {t.name for t in marks} == {"A. Player", "B. Player"}
    picked = {t.name: t.customdata[0] for t in marks}
    assert list(picked["A. Player"]) == [1.0, 1.6, 0] and list(picked["B. Player"]) == [5.0, 5.6, 1]
    assert "smash" in marks[0].text[0] or "smash" in marks[1].text[0]
    assert {t.name for t in timeline_figure(_rows(), "stroke").data} == {"smash", "clear"}
    many = [{**_rows()[0], "stroke": f"type {i}", "start_s": float(i)} for i in range(12)]
    assert timeline_figure(many, "stroke").layout.height >= 12 * 26  # twelve lanes, each label its own line
    assert fig.layout.height == 230
    empty = timeline_figure([])
    assert not empty.data and "No matching strokes" in empty.layout.annotations[0].text


def test_timeline_shades_each_rally_that_holds_several_results():
    rows = _rows() + [{**_rows()[0], "start_s": 2.0, "end_s": 2.6, "time_s": 2.3, "ball_round": 4}]
    bands = [s for s in timeline_figure(rows, "player").layout.shapes if s.type == "rect"]
    assert [(b.x0, b.x1) for b in bands] == [(1.0, 2.6)]  # rally 1 has two results, rally 2 one
    assert "R1" in [a.text for a in timeline_figure(rows, "player").layout.annotations]
    assert not [s for s in timeline_figure(_rows(), "player").layout.shapes if s.type == "rect"]


def test_rally_bands_are_labelled_with_the_score_only_where_the_label_fits():
    rallies = [{"set_no": 1, "rally": n, "start_s": a, "end_s": b, "shots": 3, "score": s}
               for n, a, b, s in ((1, 0.5, 3.0, "0-0"), (2, 4.0, 4.2, "1-0"), (3, 4.5, 40.0, None))]
    fig = timeline_figure(_rows(), "player", rallies=rallies)
    labels = [a.text for a in fig.layout.annotations]
    assert labels == ["R1 0-0", "R3"]  # rally 2 spans 0.5 % of the axis: no room for its label
    assert "Set 1 · rally 1</b> · 0-0" in fig.layout.annotations[0].hovertext
    zoomed = timeline_figure(_rows(), "player", rallies=rallies, zoom=(1, 2))
    assert list(zoomed.layout.xaxis.range) == pytest.approx([3.0, 5.2])
    assert "R2 1-0" in [a.text for a in zoomed.layout.annotations]  # zoomed in, it reads
    several = timeline_figure(_rows(), "player", rallies=[*rallies, {**rallies[0], "set_no": 2}])
    assert "S2 R1 0-0" in [a.text for a in several.layout.annotations]


def test_timeline_marks_uncertain_detections_hollow_and_names_their_confidence():
    rows = _rows()
    rows[0]["confidence"], rows[1]["confidence"] = 0.42, 0.9
    rows.append({**_rows()[1], "start_s": 8.0, "end_s": 8.6, "time_s": 8.3})  # hand-annotated: no confidence
    marks = {t.name: t for t in timeline_figure(rows, "stroke").data if t.mode == "markers"}
    smash, clear = marks["smash"], marks["clear"]
    assert list(smash.marker.symbol) == ["diamond-open"] and "uncertain (0.42)" in smash.text[0]
    assert list(clear.marker.symbol) == ["diamond", "diamond"] and "confidence 0.90" in clear.text[0]
    assert "uncertain" not in clear.text[0] and "confidence" not in clear.text[1]
    assert smash.marker.opacity[0] < clear.marker.opacity[0] == clear.marker.opacity[1]


def test_a_detection_is_uncertain_below_the_threshold_and_the_table_says_so():
    assert is_uncertain(UNCERTAIN_BELOW - 0.01) and not is_uncertain(UNCERTAIN_BELOW) and not is_uncertain(None)
    assert [confidence_cell(c) for c in (0.42, 0.9, 1.0, None)] == ["0.42 ⚠", "0.90", "1.00", ""]


def test_counts_court_and_loss_figures():
    counts = counts_figure(_rows())
    assert {t.name for t in counts.data} == {"A. Player", "B. Player"}
    court = court_figure(_rows())
    points = [t for t in court.data if t.mode == "markers"]
    assert len(points) == 2 and list(points[0].x) == [1.0] and list(points[1].y) == [11.0]
    assert court.layout.yaxis.range[0] > court.layout.yaxis.range[1]  # far baseline at the top
    loss = loss_figure([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "val_cider": 0.5}])
    assert {t.name for t in loss.data} == {"loss", "val_cider"}
    assert not loss_figure([]).data


# ---------------------------------------------------------------- engine over an index


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path / "ws", demo_match=tmp_path / "no-demo")
    (eng.workspace.uploads / "m").mkdir()
    (eng.workspace.uploads / "m" / "set1.csv").write_bytes(SET_CSV.read_bytes())
    for name in ("match.csv", "homography.csv"):  # the set file's match folder siblings
        src = SET_CSV.parents[1] / name
        (eng.workspace.uploads / name).write_bytes(src.read_bytes())
    return eng


def _add(engine):
    shuttle = engine.workspace.uploads / "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"
    shuttle.mkdir()
    (shuttle / "set1.csv").write_bytes(SET_CSV.read_bytes())
    return engine.add_match("uploads/Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals/set1.csv")


def test_engine_indexes_filters_and_keeps_corrections(engine):
    match_id = _add(engine)
    assert engine.match_choices()[0][1] == match_id
    rows = engine.strokes(match_id)
    assert len(rows) == 29 and all(r["end_s"] > r["start_s"] for r in rows)
    clears = engine.strokes(match_id, stroke="clear", side="bottom")
    assert clears and all(r["stroke"] == "clear" and r["side"] == "bottom" for r in clears)
    assert engine.strokes(match_id, rally="all", zone=None) == rows
    opts = engine.filter_options(match_id)
    assert "clear" in opts["stroke"] and set(opts["side"]) == {"upper", "bottom"}
    engine.set_caption(clears[0]["id"], "bottom player hits a deep clear")
    _add_again = engine.add_match("uploads/Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals/set1.csv")
    assert _add_again == match_id
    again = {r["id"]: r for r in engine.strokes(match_id)}
    assert any(r["caption"] == "bottom player hits a deep clear" for r in again.values())
    path, n = engine.export_captions(match_id)
    assert n == 29 and "deep clear" in path.read_text() and path.is_relative_to(engine.workspace.exports)
    with pytest.raises(EngineError):
        engine.strokes(match_id, video="x")


def test_engine_court_positions_and_exports(engine):
    match_id = _add(engine)
    rows = engine.court_rows(engine.strokes(match_id))
    placed = [r for r in rows if r["hit_m"]]
    assert placed and all(-1 < r["hit_m"][0] < 7.2 and -1 < r["hit_m"][1] < 14.5 for r in placed)
    csv_path = engine.export_results_csv(rows[:3], "q")
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("match,set_no,rally")
    with pytest.raises(EngineError, match="video"):
        engine.export_highlights(rows[:3])


def test_engine_refuses_paths_outside_the_workspace_and_urls(engine, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes(SET_CSV.read_bytes())
    with pytest.raises(PathNotAllowed):
        engine.add_match(str(outside))
    with pytest.raises(PathNotAllowed, match="URL"):
        engine.add_match("https://example.com/set1.csv")
    with pytest.raises(PathNotAllowed):
        engine.load("/etc")
    with pytest.raises(PathNotAllowed):
        engine.start_training(1, "../../data")
    with pytest.raises(EngineError, match="train.json"):
        engine.start_training(1, "data")


def test_engine_starts_without_a_workspace():
    eng = Engine()
    assert eng.describe() == "No model loaded." and eng.workspace is None
    with pytest.raises(EngineError):
        eng.matches()


def test_app_builds_with_the_security_settings(engine):
    from app import parse_args
    from ui import build_app, launch_kwargs

    args = parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860
    _add(engine)
    app = build_app(engine)
    assert app is not None
    kw = launch_kwargs(engine, args.host, args.port, args.max_upload)
    assert kw["share"] is False and kw["server_name"] == "127.0.0.1" and kw["max_file_size"] == "2gb"
    assert str(engine.workspace.root) in kw["allowed_paths"]
    assert json.dumps(kw["allowed_paths"])  # plain strings


def _shuttleset_zip(path, match: str, sets: tuple[str, ...], extra: dict | None = None):
    """A zip of a ShuttleSet folder as a coach downloads it: the two tables and one match's sets."""
    root = SET_CSV.parents[1]
    with zipfile.ZipFile(path, "w") as z:
        for name in ("match.csv", "homography.csv"):
            z.write(root / name, f"shuttleset/{name}")
        for s in sets:
            z.write(root / match / s, f"shuttleset/{match}/{s}")
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return path


def test_a_shuttleset_folder_zip_keeps_player_names_and_court_positions(engine, tmp_path):
    match = SET_CSV.parent.name
    archive = _shuttleset_zip(tmp_path / "match.zip", match, ("set1.csv", "set2.csv"))
    ids = engine.add_shuttleset(archive)
    assert len(ids) == 1  # both sets join one match
    rows = engine.strokes(ids[0])
    assert {r["set_no"] for r in rows} == {1, 2}
    names = {r["player_name"] for r in rows}
    assert len(names) == 2 and not names & {"A", "B", None}  # match.csv's names, not letters
    assert sum(r["hit_x"] is not None for r in rows) > 0.9 * len(rows)  # homography.csv's court positions
    # the same set files without the tables: letters and no positions, as a plain upload gets
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as z:
        z.write(SET_CSV.parents[1] / match / "set1.csv", f"{match}x/set1.csv")
    plain = engine.strokes(engine.add_shuttleset(bare)[0])
    assert {r["player_name"] for r in plain} <= {"A", "B", None} and all(r["hit_x"] is None for r in plain)


def test_a_bad_folder_zip_is_refused_and_nothing_is_added(engine, tmp_path):
    before = engine.matches()
    evil = _shuttleset_zip(tmp_path / "evil.zip", SET_CSV.parent.name, ("set1.csv",),
                           {"../../outside.csv": "rally\n"})
    with pytest.raises(EngineError, match="outside the folder"):
        engine.add_shuttleset(evil)
    assert not (engine.workspace.root.parent / "outside.csv").exists()
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("notes.txt", "nothing here")
    with pytest.raises(EngineError, match="no set files"):
        engine.add_shuttleset(empty)
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(EngineError, match="not a ShuttleSet folder"):
        engine.add_shuttleset(text)
    assert engine.matches() == before


def test_the_demo_match_is_indexed_in_the_background_and_the_page_follows(tmp_path):
    from core.engine import DemoStatus
    from ui import analyze_tab

    eng = Engine(tmp_path / "ws", demo_match=SET_CSV.parents[1])  # a ShuttleSet folder: three sets, no video
    eng.demo = DemoStatus(running=True, done=12, total=48, what="strokes")
    note, picker, timer = analyze_tab.on_demo_tick(eng)
    assert note.visible and "Preparing the demo match" in note.value and "25%" in note.value
    assert picker == gr.skip() and timer == gr.skip()
    eng.start_demo().join(120)
    assert not eng.demo.running and eng.demo.error is None
    (match,) = eng.matches()
    assert {r["set_no"] for r in eng.strokes(match["id"])} == {1, 2, 3}
    note, picker, timer = analyze_tab.on_demo_tick(eng)
    assert not note.visible and picker.value == match["id"] and timer.active is False
    kept = analyze_tab.on_demo_tick(eng, 7)  # a match the coach picked stays
    assert kept[1] == gr.skip() and kept[2].active is False
    # a demo that cannot be indexed: the reason on the page, the app goes on
    bad = tmp_path / "bad-demo" / "m"
    bad.mkdir(parents=True)
    (bad / "set1.csv").write_text("no,such,columns\n1,2,3\n")
    broken = Engine(tmp_path / "ws2", demo_match=bad.parent)
    broken.start_demo().join(60)
    assert not broken.demo.running and broken.demo.error
    assert analyze_tab.on_demo_tick(broken)[0].value.startswith("⚠ The demo match could not be indexed")


def test_input_mistakes_reach_the_page_without_a_traceback_in_the_log(engine, caplog):
    """Gradio prints a traceback for every error a callback raises unless told not to: an input
    mistake is said in the page only; an unexpected error is logged once, with its traceback."""
    import gradio as gr

    from core.engine import EngineError
    from ui.common import bind

    def refused(engine, text):
        raise EngineError(f"no such thing: {text}")

    def said(engine):
        raise gr.Error("Pick a match first.")

    def broken(engine):
        raise RuntimeError("a bug")

    for handler, args, message in ((refused, ("x",), "no such thing: x"), (said, (), "Pick a match first.")):
        with pytest.raises(gr.Error) as err:
            bind(handler, engine)(*args)
        assert err.value.message == message and err.value.print_exception is False
    with caplog.at_level("ERROR"), pytest.raises(gr.Error) as err:
        bind(broken, engine)()
    assert err.value.message.startswith("Something went wrong (RuntimeError: a bug)")
    assert err.value.print_exception is False and [r.exc_info is not None for r in caplog.records] == [True]


def test_messages_name_files_without_their_folders_but_keep_the_allowed_folders():
    from core.video import VideoError
    from ui.common import _message

    assert _message(VideoError("/tmp/ws/uploads/m/holiday.mp4: not a readable video file")) == \
        "holiday.mp4: not a readable video file"
    refusal = "../x.csv: outside the workspace; the app reads files only under /srv/ws or /srv/app/assets"
    assert _message(PathNotAllowed(refusal)) == refusal
    assert _message(ValueError("/a/b/set1.csv, row 3: frame 12/25")) == "set1.csv, row 3: frame 12/25"


def test_the_app_model_loads_in_the_background_before_the_demo_is_indexed(tmp_path):
    """The page serves before torch and the model load: the loading is said on the Analyze and
    Model tabs, then the demo is indexed with the model, and the Model tab shows it."""
    import threading

    from core.engine import DEMO_MODEL_DIR
    from ui import analyze_tab, model_tab

    eng = Engine(tmp_path / "ws", demo_match=SET_CSV.parents[1])
    gate, order = threading.Event(), []

    def load():
        order.append("load")
        gate.wait(60)
        eng.load(str(DEMO_MODEL_DIR), trusted=True)

    thread = eng.start_demo(load=load)
    while not order:
        time.sleep(0.01)
    assert "Loading the model" in analyze_tab.on_demo_tick(eng)[0].value
    assert model_tab.on_model_tick(eng)[0] == "Loading the model…"
    gate.set()
    thread.join(120)
    assert not eng.demo.running and eng.demo.error is None and eng.matches()
    status, memory, source, timer = model_tab.on_model_tick(eng)
    assert status.startswith("**demo-model**") and "MiB" in memory and source == str(DEMO_MODEL_DIR)
    assert timer.active is False
