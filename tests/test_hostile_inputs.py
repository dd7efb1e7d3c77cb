"""Bad input of every kind: each is refused with a message in plain words from the project's own
error types, and the index stays exactly as it was (integrity check, same rows, same captions, the
coach's corrections and edits kept)."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from core import index as index_cli
from core import query as query_cli
from core.annotations import AnnotationError, load_shuttleset_set
from core.engine import Engine, EngineError
from core.loader import ModelLoadError, load_model, save_adapters
from core.video import VideoError
from core.workspace import MAX_UPLOAD_BYTES, PathNotAllowed
from tests.hostile import bad_videos, index_state
from tests.test_index import tiny_model, write_detected_csv, write_reference_csv

SET_CSV = Path(__file__).parent / "data" / "shuttleset" / "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals" / "set1.csv"
REFERENCE_HEADER = "id,rally,ball_round,upper,type,backhand,relabel_hit_area,split\n"


@pytest.fixture(scope="module")
def adapters(tiny_base, tmp_path_factory) -> Path:
    return save_adapters(tiny_model(tiny_base), tmp_path_factory.mktemp("adapters"))


@pytest.fixture
def engine(tmp_path, adapters, index_video) -> Engine:
    """A workspace with one match indexed with a model and its video, a corrected caption and a
    moved stroke."""
    eng = Engine(tmp_path / "ws", demo_match=tmp_path / "no-demo")
    eng.load(str(adapters), trusted=True)  # as the command line's --model
    shutil.copy(index_video, eng.workspace.uploads / "demo.mp4")
    write_reference_csv(eng.workspace.uploads / "demo.csv")
    match_id = eng.add_match("uploads/demo.csv", "uploads/demo.mp4")
    rows = eng.strokes(match_id)
    assert all(r["model_caption"] for r in rows)
    eng.set_caption(rows[1]["id"], "bottom player hits a deep lob")
    eng.move_stroke(rows[3]["id"], 1)
    return eng


def refused(engine: Engine, call, error, *words: str) -> None:
    """`call` raises `error` whose message holds `words`, and the index is unchanged."""
    before = index_state(engine.index)
    with pytest.raises(error) as caught:
        call()
    for w in words:
        assert w in str(caught.value)
    assert index_state(engine.index) == before
    assert "bottom player hits a deep lob" in [r["caption"] for r in engine.strokes(None)]


# ---------------------------------------------------------------- videos


@pytest.mark.parametrize("kind", ["zero-byte", "renamed", "truncated", "half-readable"])
def test_a_bad_video_leaves_the_indexed_set_as_it_was(engine, index_video, kind):
    video = bad_videos(engine.workspace.uploads / "bad", index_video)[kind]
    refused(engine, lambda: engine.add_match("uploads/demo.csv", str(video)), VideoError, video.name)


def test_a_failed_upload_adds_no_half_indexed_match(engine, index_video):
    video = bad_videos(engine.workspace.uploads / "bad", index_video)["half-readable"]
    write_reference_csv(engine.workspace.uploads / "other.csv", game="other")
    choices = engine.match_choices()
    refused(engine, lambda: engine.add_match("uploads/other.csv", str(video)), VideoError, "past the last frame")
    assert engine.match_choices() == choices


# ---------------------------------------------------------------- annotation files


def reference_csv(path: Path, body: str) -> Path:
    path.write_text(REFERENCE_HEADER + body + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("row, words", [
    ("demo_1_99999999999999999999999,1,1,1,殺球,0,9,test", ["column 'id'", "not a frame of a match video"]),
    ("demo_1_10,9223372036854775808,1,1,殺球,0,9,test", ["column 'rally'", "too large"]),
    ("demo_99999999999999999999_10,1,1,1,殺球,0,9,test", ["column 'id'", "not a set of a match"]),
    ("demo_1_10,1e308,1,1,殺球,0,9,test", ["column 'rally'", "too large"]),
    ("demo_1_10,abc,1,1,殺球,0,9,test", ["column 'rally'", "not a number"]),
])
def test_oversized_or_garbled_numbers_are_refused_by_name(engine, row, words):
    path = reference_csv(engine.workspace.uploads / "big.csv", row)
    refused(engine, lambda: engine.add_match(str(path)), AnnotationError, *words)


def shuttleset_copy(folder: Path, edit) -> Path:
    """The real set file under folder/<match>/set1.csv with `edit(rows)` applied."""
    with SET_CSV.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    out = folder / SET_CSV.parent.name / "set1.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def _set(rows, col: str, values: dict[int, str]) -> None:
    for i, v in values.items():
        rows[i][col] = v


@pytest.mark.parametrize("edit, words", [
    (lambda rows: _set(rows, "frame_num", {3: "1e308"}), ["row 4", "too large"]),
    (lambda rows: _set(rows, "frame_num", {3: "99999999999999999999999"}), ["row 4", "too large"]),
    (lambda rows: _set(rows, "frame_num", {3: "-25"}), ["row 4", "frame -25 is not a frame"]),
    (lambda rows: _set(rows, "frame_num", {i: str(float(rows[i]["frame_num"]) * 100) for i in range(10, 20)}),
     ["rows 11, 12, 13, 14, 15, 16, 17, 18, 19, 20", "do not match their time"]),
])
def test_implausible_frames_are_refused_with_the_rows_named(engine, edit, words):
    path = shuttleset_copy(engine.workspace.uploads, edit)
    refused(engine, lambda: engine.add_match(str(path)), AnnotationError, *words)


def test_a_few_wrong_times_do_not_move_the_frame_rate(tmp_path):
    good = load_shuttleset_set(SET_CSV)
    path = shuttleset_copy(tmp_path, lambda rows: _set(rows, "time", {i: "00:00:00" for i in range(5, 10)}))
    table = load_shuttleset_set(path)
    assert table.fps == good.fps == 25.0
    assert [s.time_s for s in table.strokes] == [s.time_s for s in good.strokes]


@pytest.mark.parametrize("content, words", [
    ("rally,ball_round,frame_num,player,type\n".encode("utf-16"), ["not UTF-8 text"]),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ["not UTF-8 text"]),
    (b"just,some\nwords,here\n", ["neither a ShuttleSet set file", "nor a reference CSV"]),
    (b"", ["neither a ShuttleSet set file"]),
])
def test_broken_csv_files_are_refused(engine, content, words):
    path = engine.workspace.uploads / "broken.csv"
    path.write_bytes(content)
    refused(engine, lambda: engine.add_match(str(path)), AnnotationError, "broken.csv", *words)


def test_a_huge_csv_is_refused_before_it_is_read(engine):
    path = engine.workspace.uploads / "huge.csv"
    with path.open("wb") as f:
        f.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: no disk is used
    refused(engine, lambda: engine.add_match(str(path)), EngineError, "huge.csv is larger than 2 GiB")


def test_formulas_in_a_set_file_are_exported_as_text(engine):
    path = write_detected_csv(engine.workspace.uploads / "formulas" / "set1.csv")
    path.write_text(path.read_text(encoding="utf-8").replace(",Ann", ',"=HYPERLINK(""http://example.com"")"')
                    .replace(",Bo", ",@SUM(A1)"), encoding="utf-8")
    match_id = engine.add_match(str(path))
    out = engine.export_results_csv(engine.strokes(match_id))
    with out.open(encoding="utf-8", newline="") as f:
        names = {r["player_name"] for r in csv.DictReader(f)}
    assert names == {'\'=HYPERLINK("http://example.com")', "'@SUM(A1)"}


def test_spreadsheet_formulas_are_exported_as_text(engine):
    rows = engine.strokes(None)
    engine.set_caption(rows[0]["id"], '=HYPERLINK("http://example.com","open")')
    path = engine.export_results_csv(engine.strokes(None)[:2])
    with path.open(encoding="utf-8", newline="") as f:
        cells = [r["caption"] for r in csv.DictReader(f)]
    assert cells[0] == '\'=HYPERLINK("http://example.com","open")'
    assert cells[1] == "bottom player hits a deep lob"  # plain text stays as it is


# ---------------------------------------------------------------- paths


def test_match_and_court_files_outside_the_workspace_are_not_read(engine):
    outside = engine.workspace.root.parent
    for name in ("match.csv", "homography.csv"):  # beside the workspace: the grandparent of a root CSV
        shutil.copy(SET_CSV.parents[1] / name, outside / name)
    path = shuttleset_copy(engine.workspace.root, lambda rows: None)
    root_csv = engine.workspace.root / "set1.csv"
    shutil.copy(path, root_csv)
    match_id = engine.add_match(str(root_csv))
    assert {r["player_name"] for r in engine.strokes(match_id)} == {None}  # names come from match.csv only
    assert {r["hit_x"] for r in engine.strokes(match_id)} == {None}  # court positions from homography.csv


@pytest.mark.parametrize("typed", ["../outside.csv", "/etc/passwd", "uploads/de\x00mo.csv", "file:///etc/passwd",
                                   "https://example.com/set1.csv", "uploads/link.csv"])
def test_hostile_paths_are_refused(engine, typed):
    outside = engine.workspace.root.parent / "outside.csv"
    write_reference_csv(outside)
    os.symlink(outside, engine.workspace.uploads / "link.csv")
    refused(engine, lambda: engine.add_match(typed), PathNotAllowed)


def test_a_manifest_base_outside_the_workspace_is_not_loaded(engine, adapters):
    copy = engine.workspace.root / "models" / "copied"
    shutil.copytree(adapters, copy)  # its manifest names the tiny base outside the workspace
    with pytest.raises(PathNotAllowed, match="outside the workspace"):
        engine.load("models/copied")
    assert engine.source == str(adapters)  # the model loaded before stays


def test_a_run_is_never_written_outside_the_workspace(engine, tmp_path):
    from train.config import run_config

    data = engine.workspace.data / "d"
    data.mkdir()
    (data / "train.json").write_text("[]")
    outside = tmp_path / "elsewhere"
    with pytest.raises(EngineError, match="chosen by the app"):
        engine.start_training(1, "data/d", options={"out": str(outside), "tiny": True}, run_config=run_config)
    with pytest.raises(PathNotAllowed):
        engine.start_training(1, "data/d", options={"init": str(outside), "tiny": True}, run_config=run_config)
    assert not outside.exists() and list(engine.workspace.runs.iterdir()) == []


# ---------------------------------------------------------------- weights


@pytest.mark.parametrize("damage", [lambda b: b"", lambda b: b[: len(b) // 2], lambda b: b"\xff" * 64 + b[64:],
                                    lambda b: b"not weights at all"])
def test_corrupt_adapters_say_which_file(adapters, tmp_path, damage):
    copy = shutil.copytree(adapters, tmp_path / "damaged")
    weights = copy / "adapters.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelLoadError, match="adapters.safetensors"):
        load_model(copy)


def test_corrupt_base_weights_say_which_file(adapters, tiny_base, tmp_path):
    base = shutil.copytree(tiny_base, tmp_path / "base")
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(adapters, base=str(base))


# ---------------------------------------------------------------- ids and limits


@pytest.mark.parametrize("stroke_id", [10**30, "abc", -1, 0, 99999, None, "1; DROP TABLE strokes"])
def test_a_caption_for_a_stroke_that_is_not_there_is_refused(engine, stroke_id):
    refused(engine, lambda: engine.set_caption(stroke_id, "a smash"), EngineError, "stroke")


def test_limits_of_answers(engine):
    with pytest.raises(EngineError, match="1 or more"):
        engine.ask("smash", limit=-1)
    everything = engine.ask("smash", limit=100).rows
    assert len(everything) > 1 and engine.ask("smash", limit=1).rows == everything[:1]


# ---------------------------------------------------------------- command lines


def no_traceback(main, argv: list[str], capsys, *words: str) -> None:
    """The command exits with an error status and says why in one line, without a traceback."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse and p.exit
        code = stop.code
    err = capsys.readouterr().err
    assert code not in (0, None) and "Traceback" not in err
    for w in words:
        assert w in err


def test_command_lines_refuse_bad_input_without_a_traceback(tmp_path, capsys):
    not_index = tmp_path / "notes.sqlite"
    not_index.write_text("shopping list\n")
    garbage = tmp_path / "frames.txt"
    garbage.write_text("12, 40, forty-one\n")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    bad_json = tmp_path / "qa.json"
    bad_json.write_text("{not json")
    wrong_json = tmp_path / "qa2.json"
    wrong_json.write_text(json.dumps({"question": "smash"}))
    db = tmp_path / "ws.sqlite"
    index_cli.main(["NONE", "--annotations", str(write_reference_csv(tmp_path / "demo.csv")), "--db", str(db),
                    "--no-embed"])
    capsys.readouterr()
    no_traceback(index_cli.main, [str(video), "--frames", str(garbage), "--db", str(db)], capsys, "forty-one")
    no_traceback(index_cli.main, ["NONE", "--annotations", str(tmp_path / "demo.csv"), "--db", str(not_index)],
                 capsys, "not a stroke index")
    big = reference_csv(tmp_path / "big.csv", "demo_1_99999999999999999999999,1,1,1,殺球,0,9,test")
    no_traceback(index_cli.main, ["NONE", "--annotations", str(big), "--db", str(db)], capsys, "big.csv")
    no_traceback(query_cli.main, ["smash", "--db", str(not_index)], capsys, "not a stroke index")
    no_traceback(query_cli.main, ["smash", "--db", str(db), "--paths", "structured,telepathy"], capsys, "telepathy")
    no_traceback(query_cli.main, ["--db", str(db), "--evaluate", str(bad_json)], capsys, "not a JSON file")
    no_traceback(query_cli.main, ["--db", str(db), "--evaluate", str(wrong_json)], capsys, "list of questions")
    no_traceback(query_cli.main, ["smash", "--db", str(db), "--limit", "-1"], capsys, "1 or more")


def test_dataset_builder_refuses_oversized_numbers(tmp_path, capsys):
    from train import build_dataset

    big = reference_csv(tmp_path / "big.csv", "demo_1_99999999999999999999999,1,1,1,殺球,0,9,test")
    no_traceback(build_dataset.main, ["--annotations", str(big), "--out", str(tmp_path / "out")], capsys,
                 "not a frame of a match video")
    assert not (tmp_path / "out" / "train.json").exists()


# ---------------------------------------------------------------- training records


def test_a_run_killed_before_its_first_checkpoint_resumes_without_duplicate_records(tmp_path):
    from tests.test_train import FAST as TRAIN_FAST, make_dataset
    from train import stage1

    data = make_dataset(tmp_path / "data")
    common = ["--tiny", "--data", str(data), *TRAIN_FAST]
    run = tmp_path / "run"
    assert stage1.main(["--out", str(run), "--max-steps", "2", *common]) == 0
    shutil.rmtree(run / "checkpoints")  # as if killed before the first checkpoint was written
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss": 0.')  # the line it was writing
    assert stage1.main(["--out", str(run), "--max-steps", "3", "--resume", *common]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3]

