"""The caption loss from detection (train.caption_loss) on a short render with the shipped demo model
and detector: figures for both paths, the annotated path equal to captioning and scoring the true
hits directly (the app's own caption path), and a detection missing or shifting hits scoring lower."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from core.annotations import load_shuttleset_set
from core.detect import detect
from core.engine import Engine
from core.loader import load_model
from train import caption_loss as C
from train import metrics as M

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "tests" / "data" / "shuttleset" / "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals" / "set1.csv"
DEMO_MODEL = ROOT / "assets" / "demo-model"
SEED = 977  # never a training, validation or test seed of the shipped detector (assets/detector/README.md)
SCORED = (*M.FIELDS, "all_fields", "mean")


@pytest.fixture(scope="module")
def render(tmp_path_factory) -> Path:
    from train.replay import render_set

    return render_set(SET, tmp_path_factory.mktemp("render"), rallies="1-2", seed=SEED, size=(480, 270))


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO_MODEL, device="cpu")


@pytest.fixture(scope="module")
def detection(render):
    return detect(render.with_suffix(".mp4"))


@pytest.fixture(scope="module")
def report(render, model) -> dict:
    return C.measure([render], model)


def test_figures_for_both_paths(report, render):
    assert report["renders"] == 1 and len(report["per_render"]) == 1
    for f in SCORED:
        row = report["fields"][f]
        for k in ("annotated", "detected_all_true", "annotated_matched", "detected_matched"):
            assert 0.0 <= row[k] <= 1.0, (f, k)
        assert row["loss_all_true"] == pytest.approx(row["annotated"] - row["detected_all_true"], abs=1e-4)
    hits = report["hits"]
    assert hits["true"] == len(load_shuttleset_set(render).strokes) > 0
    assert hits["matched"] + hits["missed"] == hits["scored"]
    assert hits["matched"] > 0  # the shipped detector finds this render's hits
    json.dumps(report)  # what --json writes


def test_annotated_path_is_the_apps_captions_scored_directly(report, render):
    truth = [s for s in load_shuttleset_set(render).strokes if s.caption is not None]
    engine = Engine()
    engine.load(str(DEMO_MODEL), device="cpu", trusted=True)
    texts = engine.caption(render.with_suffix(".mp4"), [s.frame for s in truth])
    direct = M.field_accuracy([M.parse_caption(texts[s.frame]) for s in truth],
                              [M.parse_caption(s.caption) for s in truth])
    assert {f: report["fields"][f]["annotated"] for f in SCORED} == {f: round(direct[f], 4) for f in SCORED}


def test_missed_and_shifted_hits_lower_the_detected_path(render, model, detection):
    full = C.measure_set(model, render, detection)
    right = [r["detected_frame"] for r in full["strokes"] if r["detected"] is not None
             and M.parse_caption(r["detected"]).side == M.parse_caption(r["gold"]).side]
    assert right, "no matched stroke with its side right to remove"
    base = C.figures([full])
    for moved in (None, 3):  # removed; moved outside the +-2 frame tolerance
        strokes = [s if s.frame != right[0] else replace(s, frame=s.frame + moved)
                   for s in detection.strokes if moved is not None or s.frame != right[0]]
        worse = C.figures([C.measure_set(model, render, replace(detection, strokes=strokes))])
        assert worse["hits"]["missed"] == base["hits"]["missed"] + 1
        assert worse["hits"]["extra"] == base["hits"]["extra"] + (moved is not None)
        assert worse["fields"]["side"]["detected_all_true"] < base["fields"]["side"]["detected_all_true"]
        assert worse["fields"]["mean"]["detected_all_true"] < base["fields"]["mean"]["detected_all_true"]
        assert worse["fields"]["side"]["annotated"] == base["fields"]["side"]["annotated"]
