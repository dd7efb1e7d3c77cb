"""How a point ended, from ShuttleSet's outcome labels: the one reading shared by questions and
summaries.

ShuttleSet writes the outcome on the **last stroke of a rally** only (2 of 36,000 other rows carry
one): `getpoint_player` (A/B) won the point, `win_reason` says why from the winner's view and
`lose_reason` from the loser's. The last stroke's hitter decides what the stroke was:

- hitter == point winner: a **winner** (落地致勝 "landed in": the opponent did not reach it;
  對手落點判斷失誤 "the opponent misjudged it": left it, and it landed in);
- hitter != point winner: an **error** by the hitter, of kind lose_reason: 出界 out, 掛網 into
  the net (hit the net), 未過網 not over the net (also into the net), 犯規 fault, 落點判斷失誤
  misjudged (the 3 rows where the loser hit last and "misjudged": counted as errors).

Of the 3,683 rallies in ShuttleSet's 104 set files, 3,487 follow one of these patterns, 176 have
no outcome labels (`kind` None) and 20 contradict themselves; those are kept as the point winner
column says (e.g. 9 where the point winner hit last and the reason is "the opponent hit out": a
winner by the score, its reason stays "out").

Out errors are refined by where the shuttle came down (court metres, core.court): **long** past
the baseline, **wide** past the singles sideline (both when both), else just out.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.court import COURT_LENGTH, COURT_WIDTH, SINGLES_INSET

WINNER, ERROR = "winner", "error"
# ShuttleSet label (either view) -> the product's reason word
REASONS = {
    "落地致勝": "landed", "對手落地致勝": "landed",
    "對手落點判斷失誤": "misjudged", "落點判斷失誤": "misjudged",
    "落地判斷失誤": "misjudged", "對手落地判斷失誤": "misjudged",
    "出界": "out", "對手出界": "out",
    "掛網": "net", "對手掛網": "net",
    "未過網": "not over", "對手未過網": "not over",
    "犯規": "fault", "對手犯規": "fault",
}
INTO_THE_NET = ("net", "not over")
OUT_MARGIN_M = 0.0  # a landing exactly on the line is in


@dataclass(frozen=True)
class Outcome:
    """The end of one point, read from its rally's last stroke."""

    kind: str | None  # WINNER: the last hitter won the point; ERROR: the last hitter lost it; None: not annotated
    reason: str | None  # 'landed', 'misjudged', 'out', 'net', 'not over', 'fault' (see REASONS)
    winner: str | None  # 'A' | 'B': who won the point
    out: str | None = None  # for out errors with a landing point: 'long', 'wide', 'long and wide'

    @property
    def into_the_net(self) -> bool:
        return self.reason in INTO_THE_NET


def outcome(hitter: str | None, getpoint: str | None, win_reason: str | None, lose_reason: str | None,
            landing_m: tuple[float, float] | None = None) -> Outcome:
    """The outcome of a point from its last stroke's hitter letter and ShuttleSet's labels."""
    if getpoint not in ("A", "B"):
        return Outcome(None, None, None)
    label = lose_reason or win_reason
    reason = REASONS.get(label) if label else None
    kind = None if hitter not in ("A", "B") else WINNER if hitter == getpoint else ERROR
    out = out_direction(landing_m) if reason == "out" else None
    return Outcome(kind, reason, getpoint, out)


def out_direction(landing_m: tuple[float, float] | None) -> str | None:
    """'long', 'wide' or 'long and wide' for a landing point outside the singles court; None
    inside it or without a landing point."""
    if landing_m is None:
        return None
    x, y = landing_m
    long_ = y < -OUT_MARGIN_M or y > COURT_LENGTH + OUT_MARGIN_M
    wide = x < SINGLES_INSET - OUT_MARGIN_M or x > COURT_WIDTH - SINGLES_INSET + OUT_MARGIN_M
    return "long and wide" if long_ and wide else "long" if long_ else "wide" if wide else None
