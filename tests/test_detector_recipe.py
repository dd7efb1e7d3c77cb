"""The detector recipe's pieces that the held-out figures depend on: the model input ignores a
court's brightness, the camera augmentation moves the picture, the render plan keeps its lists
apart, and rally winners the source annotations contradict are not judged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.annotations import Stroke
from core.detect_model import normalise
from train.detector import UNJUDGEABLE, _winners, reframe
from train.detector_renders import EXTRA_VAL, plan


def _maps(rng, n=4) -> np.ndarray:
    return rng.uniform(0, 0.6, size=(n, 3, 18, 32)).astype(np.float32)


def test_grey_input_is_the_same_under_another_brightness_and_contrast():
    rng = np.random.default_rng(0)
    maps = _maps(rng)
    brighter, contrast = maps.copy(), maps.copy()
    brighter[:, 2] = maps[:, 2] + 0.3
    contrast[:, 2] = 1.4 * maps[:, 2]
    a, b, c = normalise(maps), normalise(brighter), normalise(contrast)
    assert torch.allclose(a[:, 2], b[:, 2], atol=1e-4)
    assert torch.allclose(a[:, 2], c[:, 2], atol=0.06)  # up to the small floor on the spread
    assert torch.equal(a[:, :2], b[:, :2])  # motion maps untouched by the grey levels
    assert abs(float(a[:, 2].mean())) < 1e-4
    assert float(a[:, 2].abs().max()) > 1.0  # the layout is kept, not flattened


def test_reframe_is_the_identity_without_zoom_or_shift_and_moves_content_otherwise():
    rng = np.random.default_rng(1)
    m = normalise(_maps(rng))
    same = reframe(m, np.random.default_rng(2), zoom=(1.0, 1.0), shift=0.0)
    assert torch.allclose(same, m, atol=1e-5)
    spot = torch.zeros(1, 3, 18, 32)
    spot[0, :, 8:10, 15:17] = 1.0
    zoomed = reframe(spot, np.random.default_rng(3), zoom=(2.0, 2.0), shift=0.0)
    assert zoomed.shape == spot.shape
    assert float(zoomed[0, 0].sum()) > 3 * float(spot[0, 0].sum())  # a centred spot grows when zoomed in
    out = reframe(spot, np.random.default_rng(3), zoom=(0.5, 0.5), shift=0.0)
    assert float(out[0, 0].sum()) < float(spot[0, 0].sum())


def test_render_plan_lists_share_no_match_and_no_seed():
    items = [i for i in plan() if i not in EXTRA_VAL]
    by_split: dict[str, set] = {}
    for i in items:
        by_split.setdefault(i.split, set()).add(i.match)
    assert set(by_split) == {"train", "val", "test"}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] | by_split["val"]) & by_split["test"]
    seeds = [i.seed for i in plan()]
    assert len(seeds) == len(set(seeds))
    assert all(i.split == "val" and i.match in by_split["val"] for i in EXTRA_VAL)


def _stroke(rally, player, side, score):
    return Stroke(match="m", set=1, rally=rally, ball_round=1, frame=rally * 100, side=side, player=player,
                  score_a=score[0], score_b=score[1])


def test_rallies_out_of_place_are_judged_in_the_video_s_order():
    class Table:  # rally 2 annotated after rally 3 in the video
        strokes = [_stroke(1, "A", "bottom", (1, 0)), _stroke(3, "A", "bottom", (2, 1)),
                   _stroke(2, "B", "upper", (1, 1))]
    Table.strokes[2].frame = 500
    assert _winners(Table()) == ["bottom", None, None]  # 1-0 then 2-1: that jump says nothing


def test_winner_contradicted_by_the_next_serve_is_unjudgeable():
    class Table:
        strokes = [_stroke(1, "A", "bottom", (1, 0)),  # A wins rally 1 from the bottom half ...
                   _stroke(2, "A", "upper", (1, 1)),   # ... but serves rally 2 from the top: contradiction
                   _stroke(3, "B", "bottom", (1, 2)),  # B (bottom in rally 3) won rally 2 ...
                   _stroke(4, "B", "bottom", (1, 3)),  # ... and serves rally 3 from there: consistent
                   _stroke(6, "B", "bottom", (1, 5))]  # two points in one rally: rally 5 is missing
    w = _winners(Table())
    assert w[0] == UNJUDGEABLE
    assert w[2] == "bottom"
    assert w[3] == "bottom"
    assert w[4] is None  # the score does not say who won it (and it has no next serve)
