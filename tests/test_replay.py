"""Rendered replays: annotations survive the round trip, timing, determinism, the shuttle sits at the
hit points, no label leaks into the pixels, H.264 + AAC files whose frames are exact, and the
rally / cut-away segments."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.annotations import load_shuttleset_set
from core.video import iter_windows, read_window
from tests.conftest import read_index
from train.render.camera import Camera
from train.render.shuttle import profile
from train.replay import (HOLD_S, LAST_FLIGHT_S, MIN_PAUSE_S, MIN_RETURN_GAP_S, MIN_STROKE_GAP_S, SETUP_S,
                          RenderOptions, ReplayError, main, parse_rallies, render_set)

SHUTTLESET = Path(__file__).resolve().parents[2] / "shared" / "data" / "shuttleset"
VIDEO = "Kento_MOMOTA_CHOU_Tien_Chen_Fuzhou_Open_2019_Finals"
SMALL = (160, 90)

pytestmark = pytest.mark.skipif(not (SHUTTLESET / VIDEO / "set1.csv").is_file(),
                                reason="ShuttleSet annotations not found beside the repo")


def _copy_set(root: Path, rallies: set[int], retype: dict[str, str] | None = None) -> Path:
    """A ShuttleSet-layout copy of some rallies of a real set, stroke types optionally replaced."""
    folder = root / VIDEO
    folder.mkdir(parents=True)
    for name in ("match.csv", "homography.csv"):
        shutil.copy(SHUTTLESET / name, root / name)
    with (SHUTTLESET / VIDEO / "set1.csv").open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, [r for r in reader if int(r["rally"]) in rallies]
    for r in rows:
        r["type"] = (retype or {}).get(r["type"], r["type"])
    out = folder / "set1.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return out


def _frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _copy_set(tmp_path_factory.mktemp("src"), {2, 3})


@pytest.fixture(scope="module")
def rendered(source, tmp_path_factory) -> Path:
    return render_set(source, tmp_path_factory.mktemp("out"), seed=5, size=SMALL)


def _key(s):
    return (s.rally, s.ball_round, s.player, s.side, s.type_zh, s.stroke, s.zone)


def test_round_trip_through_the_importer(source, rendered):
    src, out = load_shuttleset_set(source), load_shuttleset_set(rendered)
    assert [_key(s) for s in out.strokes] == [_key(s) for s in src.strokes]
    assert all(s.zone is not None for s in out.strokes)
    root = rendered.parent.parent
    for name in ("match.csv", "homography.csv"):
        with (root / name).open(encoding="utf-8") as f:
            assert [r["video"] for r in csv.DictReader(f)] == [VIDEO]
    w, h = SMALL
    for (x, y) in (out.court.upleft, out.court.upright, out.court.downleft, out.court.downright):
        assert 0 <= x <= w and 0 <= y <= h


def test_hit_frames_and_video_format(rendered):
    frames = [s.frame for s in load_shuttleset_set(rendered).strokes]
    mp4 = rendered.with_suffix(".mp4")
    cap = cv2.VideoCapture(str(mp4))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == SMALL
    cap.release()
    assert len(_frames(mp4)) == n
    assert all(b > a for a, b in zip(frames, frames[1:]))
    assert 0 <= frames[0] and frames[-1] < n
    decord = pytest.importorskip("decord")
    assert len(decord.VideoReader(str(mp4))) == n


def _segments(rendered: Path) -> dict:
    return json.loads(rendered.with_suffix(".segments.json").read_text(encoding="utf-8"))


def test_timing_keeps_rally_gaps_and_cuts_pauses(source, rendered):
    src, out = load_shuttleset_set(source).strokes, load_shuttleset_set(rendered).strokes
    cuts = _segments(rendered)["cutaways"]
    for a, b, ra, rb in zip(src, src[1:], out, out[1:]):
        gap = (rb.frame - ra.frame) / 25
        if a.rally == b.rally:
            shortest = MIN_RETURN_GAP_S if b.ball_round == 2 else MIN_STROKE_GAP_S
            assert gap == pytest.approx(max(b.time_s - a.time_s, shortest), abs=0.05)
        else:  # the pause is cut, then lengthened to hold the cut-aways and the server's set-up
            between = [c for c in cuts if ra.frame < c["start_frame"] < rb.frame]
            resume = max([c["end_frame"] + 1 for c in between], default=0)
            assert gap <= max(LAST_FLIGHT_S + 4.0, (resume - ra.frame) / 25 + SETUP_S + HOLD_S) + 0.05
            assert gap >= LAST_FLIGHT_S + MIN_PAUSE_S - 0.05  # the server needs time, cut-aways or not


def test_a_server_annotated_at_the_net_is_drawn_in_the_service_court():
    from core.annotations import Stroke
    from core.court import NET_Y, SHORT_SERVICE_DIST, Court
    from train.replay import _place

    court = Court((0, 0), (610, 0), (0, 1340), (610, 1340))  # 1 px = 1 cm
    serve = Stroke("m", 1, 1, 1, 100, "bottom", player_xy=(300, NET_Y * 100 + 40),
                   opponent_xy=(300, NET_Y * 100 - 20))
    shot = _place(serve, {}, 100, 4.0, "A", court)
    assert shot.hitter_xy[1] >= NET_Y + SHORT_SERVICE_DIST and shot.other_xy[1] <= NET_Y - SHORT_SERVICE_DIST
    assert shot.contact[1] > NET_Y + SHORT_SERVICE_DIST  # struck in front of him, still behind the line
    rally = Stroke("m", 1, 1, 2, 120, "bottom", player_xy=(300, NET_Y * 100 + 40), hit_xy=(300, NET_Y * 100 + 40))
    assert _place(rally, {}, 120, 4.8, "A", court).hitter_xy[1] == pytest.approx(NET_Y + 0.4)  # net play stays


def test_segments_file_and_rally_columns(source, rendered):
    seg = _segments(rendered)
    assert set(seg) == {"fps", "frames", "size", "audio", "rallies", "cutaways"}
    assert seg["fps"] == 25 and seg["size"] == list(SMALL) and seg["audio"] is True
    cap = cv2.VideoCapture(str(rendered.with_suffix(".mp4")))
    assert seg["frames"] == int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    strokes = load_shuttleset_set(rendered).strokes
    assert [r["rally"] for r in seg["rallies"]] == sorted({s.rally for s in strokes})
    assert seg["cutaways"] and {c["kind"] for c in seg["cutaways"]} <= {"replay", "closeup", "crowd", "walkback"}
    spans = sorted([(r["start_frame"], r["end_frame"]) for r in seg["rallies"]]
                   + [(c["start_frame"], c["end_frame"]) for c in seg["cutaways"]])
    assert spans[0][0] == 0 and spans[-1][1] < seg["frames"]
    assert all(a <= b < c for (a, b), (c, _) in zip(spans, spans[1:]))  # no overlaps
    by_rally = {r["rally"]: r for r in seg["rallies"]}
    with rendered.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for s, row in zip(strokes, rows):
        r = by_rally[s.rally]
        assert (int(row["rally_start_frame"]), int(row["rally_end_frame"])) == (r["start_frame"], r["end_frame"])
        assert r["start_frame"] < s.frame <= r["end_frame"]  # every hit is in its rally's live shot
        assert not any(c["start_frame"] <= s.frame <= c["end_frame"] for c in seg["cutaways"])


def test_without_cutaways_or_audio(source, tmp_path):
    out = render_set(source, tmp_path, seed=5, size=SMALL, cutaways=False, audio=False)
    seg = _segments(out)
    assert seg["cutaways"] == [] and seg["audio"] is False
    strokes = load_shuttleset_set(out).strokes
    for a, b in zip(strokes, strokes[1:]):
        if a.rally != b.rally:
            assert LAST_FLIGHT_S + MIN_PAUSE_S - 0.05 <= (b.frame - a.frame) / 25 <= LAST_FLIGHT_S + 4.0 + 0.05
    a, b = seg["rallies"]
    assert a["start_frame"] == 0 and b["start_frame"] == a["end_frame"] + 1 and b["end_frame"] < seg["frames"]
    av = pytest.importorskip("av")
    with av.open(str(out.with_suffix(".mp4"))) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 0


def test_h264_and_aac_streams(rendered):
    av = pytest.importorskip("av")
    seg = _segments(rendered)
    with av.open(str(rendered.with_suffix(".mp4"))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert (video.width, video.height) == SMALL and video.frames == seg["frames"]
        assert audio.codec_context.name == "aac" and audio.rate in (44100, 48000)
        assert float(audio.duration * audio.time_base) == pytest.approx(seg["frames"] / 25, abs=0.05)


def test_decoded_frames_are_the_rendered_frames(source, tmp_path):
    """Frame i of the file is rendered frame i for OpenCV, core.video's readers and decord."""
    out = render_set(source, tmp_path, seed=7, size=SMALL, options=RenderOptions(stamp=True), audio=False)
    mp4, n = out.with_suffix(".mp4"), _segments(out)["frames"]
    frames = _frames(mp4)
    assert [read_index(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames] == list(range(n))
    hits = [s.frame for s in load_shuttleset_set(out).strokes]
    for centre, window in iter_windows(mp4, hits):
        assert [read_index(f) for f in window] == list(range(centre - 7, centre + 9))
    for centre in (hits[0], hits[-1], n - 3):
        window = read_window(mp4, centre)
        assert [read_index(f) for f in window] == [min(max(i, 0), n - 1) for i in range(centre - 7, centre + 9)]
    decord = pytest.importorskip("decord")
    reader = decord.VideoReader(str(mp4))
    assert len(reader) == n
    picks = [n - 1, 0, hits[3], n // 2]
    assert [read_index(reader[i].asnumpy()) for i in picks] == picks


def _diff_points(a: np.ndarray, b: np.ndarray, threshold: int = 40) -> np.ndarray:
    d = np.abs(a.astype(int) - b.astype(int)).max(-1)
    ys, xs = np.nonzero(d > threshold)
    return np.stack([xs, ys], 1).astype(float)


def test_shuttle_is_at_each_hitters_contact_point(source, tmp_path):
    size = (320, 180)
    with_shuttle = render_set(source, tmp_path / "on", seed=2, size=size, audio=False, cutaways=False)
    without = render_set(source, tmp_path / "off", seed=2, size=size, options=RenderOptions(shuttle=False),
                         audio=False, cutaways=False)
    table = load_shuttleset_set(with_shuttle)
    cam = Camera(table.court, size)
    on, off = _frames(with_shuttle.with_suffix(".mp4")), _frames(without.with_suffix(".mp4"))
    checked = 0
    for s in table.strokes:
        if s.hit_xy is None:  # serves are struck in front of the server, not at a hit point
            continue
        x, y = table.court.to_court(*s.hit_xy)
        expect = cam.project(x, y, profile(s.stroke).contact_z)
        pts = _diff_points(on[s.frame], off[s.frame])
        assert len(pts), f"no shuttle in frame {s.frame}"
        assert np.min(np.linalg.norm(pts - expect, axis=1)) < 3.0, (s.rally, s.ball_round)
        # the hitter really is there: his annotated position is within reach of the contact point
        px, py = table.court.to_court(*s.player_xy)
        assert np.hypot(px - x, py - y) < 3.0
        checked += 1
    assert checked >= 8


def test_shuttle_survives_downscaling(source, tmp_path):
    on = render_set(source, tmp_path / "on", rallies="2", seed=4, audio=False, cutaways=False)
    off = render_set(source, tmp_path / "off", rallies="2", seed=4, options=RenderOptions(shuttle=False),
                     audio=False, cutaways=False)
    strokes = load_shuttleset_set(on).strokes
    a, b = _frames(on.with_suffix(".mp4")), _frames(off.with_suffix(".mp4"))
    for s, nxt in zip(strokes, strokes[1:]):
        mid = (s.frame + nxt.frame) // 2  # in flight
        small = [cv2.resize(f[mid], (128, 72), interpolation=cv2.INTER_AREA).astype(int) for f in (a, b)]
        assert np.abs(small[0] - small[1]).max() > 25, f"shuttle lost at 128x72 in frame {mid}"


def test_no_stroke_label_in_the_pixels(tmp_path):
    """Swapping every stroke type changes only the racket swing and the shuttle's flight."""
    swap = {"發短球": "發長球", "長球": "殺球", "推球": "放小球", "殺球": "切球", "擋小球": "挑球",
            "撲球": "平球", "平球": "勾球", "放小球": "推球", "挑球": "長球", "點扣": "擋小球",
            "過度切球": "撲球", "勾球": "放小球"}
    real = _copy_set(tmp_path / "real", {2, 3})
    fake = _copy_set(tmp_path / "fake", {2, 3}, retype=swap)
    assert load_shuttleset_set(real).strokes[1].stroke != load_shuttleset_set(fake).strokes[1].stroke
    still = RenderOptions(shuttle=False, swing=False)
    a = render_set(real, tmp_path / "a", seed=9, size=SMALL, options=still, audio=False)
    b = render_set(fake, tmp_path / "b", seed=9, size=SMALL, options=still, audio=False)
    assert np.array_equal(_frames(a.with_suffix(".mp4")), _frames(b.with_suffix(".mp4")))
    # with motion on, the renders differ, but only in small areas (racket, shuttle)
    a = render_set(real, tmp_path / "c", seed=9, size=SMALL, audio=False)
    b = render_set(fake, tmp_path / "d", seed=9, size=SMALL, audio=False)
    fa, fb = _frames(a.with_suffix(".mp4")), _frames(b.with_suffix(".mp4"))
    assert not np.array_equal(fa, fb)
    for s in load_shuttleset_set(a).strokes:
        changed = (np.abs(fa[s.frame].astype(int) - fb[s.frame].astype(int)).max(-1) > 30).mean()
        assert changed < 0.03


def test_wide_looks_keep_the_court_in_frame_and_its_family_palette():
    import colorsys

    from core.annotations import load_shuttleset_set as load
    from train.render.style import FAMILIES, make_style
    from train.replay import _camera_matrix, _transform_court

    court = load(SHUTTLESET / VIDEO / "set1.csv").court
    w, h = 640, 360
    for family, fam in FAMILIES.items():
        tilts = []
        for seed in range(12):
            style = make_style(np.random.default_rng([seed, 0]), family)
            corners = np.array([getattr(_transform_court(court, _camera_matrix((w, h), style, court)), c)
                                for c in ("upleft", "upright", "downleft", "downright")])
            assert (corners[:, 0] >= 0.02 * w).all() and (corners[:, 0] <= 0.98 * w).all(), (family, seed)
            assert (corners[:, 1] >= 0.15 * h).all() and (corners[:, 1] <= 0.98 * h).all(), (family, seed)
            b, g, r = style.court
            hue = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0]
            assert min(min(abs(hue - c), 1 - abs(hue - c)) for c in fam.hues) <= 0.04, (family, hue)
            tilts.append(style.tilt)
        assert fam.tilt[0] <= min(tilts) and max(tilts) <= fam.tilt[1] and np.ptp(tilts) > 0


def test_a_wide_look_renders_under_its_own_video_name_with_the_same_labels(source, tmp_path):
    narrow = render_set(source, tmp_path / "a", rallies="2", seed=6, size=SMALL, audio=False, cutaways=False)
    wide = render_set(source, tmp_path / "b", rallies="2", seed=6, size=SMALL, audio=False, cutaways=False,
                      family="high", fps=50, video="look-7")
    assert wide.parent.name == "look-7" and wide.with_suffix(".mp4").is_file()
    a, b = load_shuttleset_set(narrow), load_shuttleset_set(wide)
    assert b.court is not None and [s.match for s in b.strokes] == ["look-7"] * len(b.strokes)
    assert [(s.side, s.zone, s.stroke) for s in a.strokes] == [(s.side, s.zone, s.stroke) for s in b.strokes]
    assert all(abs(fb - 2 * fa) <= 1 for fa, fb in zip((s.frame for s in a.strokes), (s.frame for s in b.strokes)))
    assert not np.array_equal(_frames(narrow.with_suffix(".mp4"))[5], _frames(wide.with_suffix(".mp4"))[5])


def test_bad_inputs_give_clear_errors(source, tmp_path):
    with pytest.raises(ReplayError, match="not found"):
        render_set(tmp_path / "nope" / "set1.csv", tmp_path / "o")
    with pytest.raises(ReplayError, match="none of the rallies"):
        render_set(source, tmp_path / "o", rallies="90-91", size=SMALL)
    with pytest.raises(ReplayError, match="bad rally"):
        render_set(source, tmp_path / "o", rallies="2-x", size=SMALL)
    with pytest.raises(ReplayError, match="bad size"):
        render_set(source, tmp_path / "o", size=(161, 90))
    with pytest.raises(ReplayError, match="bad fps"):
        render_set(source, tmp_path / "o", size=SMALL, fps=0)
    with pytest.raises(ReplayError, match="max gap"):
        render_set(source, tmp_path / "o", size=SMALL, max_gap=-1)
    with pytest.raises(ReplayError, match="unknown look family 'neon'"):
        render_set(source, tmp_path / "o", size=SMALL, family="neon")
    garbage = tmp_path / "g" / VIDEO / "set1.csv"
    garbage.parent.mkdir(parents=True)
    garbage.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="missing required column"):
        render_set(garbage, tmp_path / "o", size=SMALL)


def test_cli_reports_errors_without_traceback(source, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--set", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--set", str(source), "--out", str(tmp_path / "o"), "--size", "big"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_cli_renders_selected_rallies(source, tmp_path, capsys):
    assert main(["--set", str(source), "--out", str(tmp_path / "o"), "--rallies", "3",
                 "--size", "160x90", "--seed", "1", "--max-gap", "1", "--no-audio", "--no-cutaways"]) == 0
    out = load_shuttleset_set(tmp_path / "o" / VIDEO / "set1.csv")
    assert {s.rally for s in out.strokes} == {3}
    seg = _segments(tmp_path / "o" / VIDEO / "set1.csv")
    assert seg["audio"] is False and seg["cutaways"] == []
    # a second set of the same match goes beside it; the match's rows are replaced, not repeated
    set2 = tmp_path / "src2" / VIDEO / "set2.csv"
    set2.parent.mkdir(parents=True)
    shutil.copy(source, set2)
    for name in ("match.csv", "homography.csv"):
        shutil.copy(source.parent.parent / name, set2.parent.parent / name)
    court = load_shuttleset_set(tmp_path / "o" / VIDEO / "set1.csv").court
    render_set(set2, tmp_path / "o", rallies=[2], seed=8, size=SMALL, audio=False)  # same match, same camera
    assert load_shuttleset_set(tmp_path / "o" / VIDEO / "set2.csv").court == court
    assert (tmp_path / "o" / VIDEO / "set2.mp4").is_file()
    for name in ("match.csv", "homography.csv"):
        with (tmp_path / "o" / name).open(encoding="utf-8") as f:
            assert [r["video"] for r in csv.DictReader(f)] == [VIDEO]
    assert load_shuttleset_set(tmp_path / "o" / VIDEO / "set1.csv").court == court
    with pytest.raises(ReplayError, match="another camera or size"):
        render_set(set2, tmp_path / "o", rallies=[2], size=(320, 180))


def test_parse_rallies():
    assert parse_rallies("1-3,7, 9-10") == {1, 2, 3, 7, 9, 10}
    with pytest.raises(ReplayError):
        parse_rallies("3-1")
