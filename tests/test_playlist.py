"""Playlists: reordering, saving and opening by name, and their exports (a highlight reel with a
title card before each clip, a CMX 3600 EDL whose timecodes are the clips' own)."""
from __future__ import annotations

import re

import pytest

from core import playlist
from core.playlist import PlaylistError
from core.video import TITLE_CARD_S, title_card, video_fps, write_highlights
from tests.conftest import read_index


def _row(rally: int, stroke: int, start: float, **kw) -> dict:
    return {"match_id": 1, "set_no": 1, "rally": rally, "ball_round": stroke, "start_s": start, "end_s": start + 0.6,
            "player_name": "Kento MOMOTA", "stroke": "smash", "caption": "bottom player hits a smash", **kw}


def test_adding_keeps_the_order_and_each_clip_once_and_moves_stay_in_bounds():
    a, b, c = _row(1, 1, 1.0), _row(1, 2, 2.0), _row(2, 1, 5.0)
    items = playlist.add([], [a, b])
    items = playlist.add(items, [b, c, {**c, "kind": "rally"}])  # b is in already; a rally is not its stroke
    assert [(r["rally"], r.get("ball_round"), r.get("kind")) for r in items] == [(1, 1, None), (1, 2, None), (2, 1, None),
                                                                                 (2, 1, "rally")]
    moved, at = playlist.move(items, 2, -1)
    assert [r["start_s"] for r in moved] == [1.0, 5.0, 2.0, 5.0] and at == 1
    assert playlist.move(moved, 0, -1) == (moved, 0)  # already first
    assert playlist.move(moved, 3, 1)[1] == 3
    assert [r["start_s"] for r in playlist.remove(moved, 0)] == [5.0, 2.0, 5.0]
    for bad in (-1, 4):
        with pytest.raises(PlaylistError, match="pick a clip"):
            playlist.move(moved, bad, 1)
        with pytest.raises(PlaylistError, match="pick a clip"):
            playlist.remove(moved, bad)


def test_a_saved_playlist_opens_as_it_was_and_bad_names_and_files_are_refused(tmp_path):
    items = playlist.add([], [_row(3, 2, 9.5), _row(1, 1, 1.0, unknown_field="x")])
    path = playlist.save(tmp_path, "Momota smashes", items)
    assert path.name == "Momota_smashes.json" and not list(tmp_path.glob("*.part"))
    assert playlist.load(tmp_path, "Momota smashes") == items and "unknown_field" not in items[1]
    assert playlist.names(tmp_path) == ["Momota_smashes"]
    playlist.save(tmp_path, "Momota smashes", items[:1])  # the same name: replaced
    assert playlist.load(tmp_path, "Momota_smashes") == items[:1]
    for name in ("", "  ", "../"):
        with pytest.raises(PlaylistError, match="give the playlist a name"):
            playlist.save(tmp_path, name, items)
    with pytest.raises(PlaylistError, match="empty"):
        playlist.save(tmp_path, "nothing", [])
    with pytest.raises(PlaylistError, match="no playlist named"):
        playlist.load(tmp_path, "missing")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PlaylistError, match="cannot be read"):
        playlist.load(tmp_path, "broken")
    (tmp_path / "other.json").write_text('{"items": [{"caption": "no times"}]}')
    with pytest.raises(PlaylistError, match="holds no clips"):
        playlist.load(tmp_path, "other")


def test_title_cards_say_where_who_and_what_in_letters_a_video_font_draws():
    assert playlist.title(_row(5, 3, 1.0, player_name="Viktor AXELSÉN")) == [
        "Set 1  Rally 5  Stroke 3", "Viktor AXELSEN smash", "bottom player hits a smash"]
    rally = {"kind": "rally", "set_no": 2, "rally": 14, "score_before": "11-9", "shots": 7, "won_by": "A",
             "ending": "B's net shot, error (net)", "start_s": 0.0}
    assert playlist.title(rally) == ["Set 2  Rally 14  (11-9)", "7 shots, won by A", "B's net shot, error (net)"]
    card = title_card(playlist.title(rally), (320, 180))
    assert card.shape == (180, 320, 3) and card.max() > 200 and (card == 24).mean() > 0.8  # light text on dark


def test_a_highlight_reel_puts_a_title_card_before_each_clip(index_video, tmp_path):
    import av

    fps = video_fps(index_video)
    reel = write_highlights([(index_video, 10 / fps, 14 / fps), (index_video, 100 / fps, 102 / fps)],
                            tmp_path / "reel.mp4", titles=[["Rally 1"], ["Rally 2"]])
    with av.open(str(reel)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(f.streams.video[0])]
    card = int(round(TITLE_CARD_S * fps))
    assert len(frames) == 2 * card + 5 + 3
    assert [read_index(f) for f in frames[card:card + 5]] == [10, 11, 12, 13, 14]
    assert [read_index(f) for f in frames[2 * card + 5:]] == [100, 101, 102]
    assert frames[0].mean() < 60 and frames[card - 1].mean() < 60  # the card is dark, the clip is not its frame


def test_an_edl_cuts_the_clips_one_after_another_at_their_source_timecodes():
    text = playlist.edl("Momota smashes", [(_row(1, 1, 0.0, video="/m/set1.mp4"), 1.0, 2.5, 25.0),
                                           (_row(4, 2, 0.0, video="/m/set2.mp4"), 61.2, 62.0, 29.97)])
    assert text.startswith("TITLE: Momota smashes\nFCM: NON-DROP FRAME\n")
    events = re.findall(r"^(\d{3})  AX +V +C +(\S+) (\S+) (\S+) (\S+)$", text, re.M)
    assert events == [("001", "00:00:01:00", "00:00:02:13", "00:00:00:00", "00:00:01:13"),
                      ("002", "00:01:01:06", "00:01:02:00", "00:00:01:15", "00:00:02:09")]
    assert "* FROM CLIP NAME: set2.mp4" in text and "* COMMENT: Set 1  Rally 4  Stroke 2 / Kento MOMOTA smash" in text
    assert playlist.timecode(3661.5, 30) == "01:01:01:15"
