"""Point outcomes (core.outcome) read from real ShuttleSet sets: the point winner is the
player whose score rose, a winner was hit by them and an error by the other player."""
from __future__ import annotations

from pathlib import Path

from core.annotations import load_shuttleset_set
from core.outcome import ERROR, WINNER, out_direction, outcome

SHUTTLESET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "shuttleset"  # beside the repository
SET_FILES = sorted(SHUTTLESET.glob("*/set*.csv"))[:12]


def test_every_annotated_point_of_the_excerpt_has_the_winner_its_score_says():
    judged = 0
    for path in SET_FILES:
        table = load_shuttleset_set(path)
        last: dict[int, object] = {}
        for s in table.strokes:
            last[s.rally] = s
        for rally in sorted(last):
            s, before = last[rally], last.get(rally - 1)  # the excerpt leaves some rallies out
            o = outcome(s.player, s.getpoint_player, s.win_reason, s.lose_reason)
            if o.winner is None or (before is None and rally > 1):
                continue
            prev = (before.score_a, before.score_b) if before else (0, 0)
            rose = "A" if s.score_a > prev[0] else "B"
            judged += 1
            assert o.winner == rose, (path.name, rally)
            assert o.kind == (WINNER if s.player == o.winner else ERROR)
            assert o.reason in ("landed", "misjudged", "out", "net", "not over", "fault")
    assert judged > 300


def test_out_errors_are_long_or_wide_by_the_landing_point():
    assert out_direction((3.0, 13.9)) == "long" and out_direction((3.0, -0.2)) == "long"
    assert out_direction((0.2, 10.0)) == "wide" and out_direction((6.0, 3.0)) == "wide"
    assert out_direction((0.1, 13.8)) == "long and wide"
    assert out_direction((3.0, 10.0)) is None and out_direction(None) is None
    assert outcome("B", "A", "對手出界", "出界", (3.0, 14.0)).out == "long"
    assert outcome("A", "A", "落地致勝", "對手落地致勝", (3.0, 14.0)).out is None  # only outs
