"""core.batch on a local Ray instance: a season of rendered sets is indexed exactly as the
single-process indexer (core.indexer.add_match) indexes it, a re-run skips the finished sets, and
bad input is refused in one line per problem while the good sets are indexed."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest

from core.batch import main as batch_main
from core.indexer import add_match
from core.loader import load_model, save_adapters
from core.store import StrokeStore
from tests.test_index import tiny_model
from train.replay import render_set

if os.environ.get("CI"):  # CI installs requirements-scale.txt: a missing Ray there is a failure
    import ray
else:
    ray = pytest.importorskip("ray")

SETS = Path(__file__).parent / "data" / "shuttleset" / "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"


@pytest.fixture(scope="module")
def season(tmp_path_factory) -> Path:
    """Two sets of one match, three rallies each, rendered at 96x54 (videos beside the set files)."""
    out = tmp_path_factory.mktemp("season")
    for n in (1, 2):
        render_set(SETS / f"set{n}.csv", out, rallies="1-3", seed=n, size=(96, 54), cutaways=False, audio=False)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_base, tmp_path_factory) -> Path:
    return save_adapters(tiny_model(tiny_base), tmp_path_factory.mktemp("model") / "adapters")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def run_batch(folder: Path, db: Path, model: Path, *more: str) -> int:
    return batch_main(["--videos", str(folder), "--annotations", str(folder), "--db", str(db), "--model", str(model),
                       "--no-embed", *more])


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def single_process(db: Path, sets: list[Path], model_dir: Path) -> StrokeStore:
    store, model = StrokeStore(db), load_model(model_dir)
    for csv in sets:
        add_match(store, csv, csv.with_suffix(".mp4"), model=model)
    return store


def contents(store: StrokeStore) -> dict:
    """What an index holds, without row ids and times (sets may finish in any order)."""
    skip = {"id", "set_id", "updated"}
    strokes = sorted((tuple((k, v) for k, v in r.items() if k not in skip) for r in store.strokes()))
    sets = sorted(tuple((k, v) for k, v in s.items() if k not in skip) for s in store.sets())
    captions = sorted(tuple(r) for r in store.db.execute("SELECT * FROM model_captions"))
    tokens = sorted(str(p.relative_to(store.token_dir)) for p in store.token_dir.rglob("*.npy"))
    return {"strokes": strokes, "sets": sets, "captions": captions, "tokens": tokens}


def test_a_season_on_two_actors_is_what_the_single_process_indexer_writes(season, adapters, local_ray, tmp_path,
                                                                          capsys):
    assert run_batch(season, tmp_path / "batch.sqlite", adapters, "--actors", "2") == 0
    assert summary(capsys.readouterr().out) == {"sets": 2, "indexed": 2, "skipped": 0, "failed": 0}
    batch = contents(StrokeStore(tmp_path / "batch.sqlite"))
    single = contents(single_process(tmp_path / "single.sqlite", sorted(season.rglob("set*.csv")), adapters))
    assert len(batch["strokes"]) == len(batch["tokens"]) == len(batch["captions"]) > 20
    assert all(dict(r)["model_caption"] for r in batch["strokes"])
    assert batch == single


def test_a_rerun_skips_the_finished_sets_and_indexes_the_others(season, adapters, local_ray, tmp_path, capsys):
    db = tmp_path / "index.sqlite"
    first = sorted(season.rglob("set1.csv"))
    store = single_process(db, first, adapters)  # set 1 indexed by the single-process indexer: finished
    assert run_batch(season, db, adapters) == 0
    out = capsys.readouterr().out
    assert summary(out) == {"sets": 2, "indexed": 1, "skipped": 1, "failed": 0}
    assert "skipped Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals set 1" in out
    generation, every = store.generation(), contents(store)
    assert run_batch(season, db, adapters) == 0
    assert summary(capsys.readouterr().out) == {"sets": 2, "indexed": 0, "skipped": 2, "failed": 0}
    assert store.generation() == generation and contents(store) == every  # nothing written again


def test_bad_sets_are_named_in_one_line_each_and_the_good_ones_are_indexed(season, adapters, local_ray, tmp_path,
                                                                           capsys):
    folder = tmp_path / "season"
    shutil.copytree(season, folder)
    match = folder / SETS.name
    (match / "set3.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # not a set file
    shutil.copy(match / "set1.csv", folder / SETS.name / "set4.csv")  # a set file without its video
    video = match / "set2.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # cut short: decoding fails on the worker
    db = tmp_path / "index.sqlite"
    assert run_batch(folder, db, adapters) == 1
    out, err = capsys.readouterr()
    assert summary(out) == {"sets": 4, "indexed": 1, "skipped": 0, "failed": 3}
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 3 and "Traceback" not in err, err
    assert any("set3.csv" in line and "neither a ShuttleSet" in line for line in lines), lines
    assert any("set4.csv" in line and "no video for" in line for line in lines), lines
    assert any("set2.csv" in line and "past the last frame" in line for line in lines), lines
    assert [s["set_no"] for s in StrokeStore(db).sets()] == [1]  # all or nothing: the cut video's set is not there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("what", ["videos", "annotations", "model", "ray"])
def test_a_missing_folder_an_unknown_model_or_no_cluster_is_refused_in_one_line(season, adapters, tmp_path, capsys,
                                                                                what):
    nothing = f"127.0.0.1:{free_port()}" if what == "ray" else str(tmp_path / "nothing")
    args = {"videos": season, "annotations": season, "model": adapters, "ray": None, what: nothing}
    code = batch_main(["--videos", str(args["videos"]), "--annotations", str(args["annotations"]),
                       "--db", str(tmp_path / "index.sqlite"), "--model", str(args["model"]),
                       *(["--ray", args["ray"]] if args["ray"] else [])])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]  # Ray's workers may log too
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert nothing in lines[0]
