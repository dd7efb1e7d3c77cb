"""Stroke and zone vocabularies: ShuttleSet's 18 labels, the reference system's 11 names,
and the product's caption names.

Captions use the product names (clear English, ShuttleSet's own translation); the reference
system's odd English names are kept as aliases so its data and questions still map.
The four drive-like labels have no reference name; they form the product class "drive".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrokeLabel:
    zh: str  # ShuttleSet label
    shuttleset_en: str  # ShuttleSet's English name
    stroke: str  # product class used in captions
    reference_en: str | None  # the reference system's name of that class, None if it had none


STROKE_LABELS: tuple[StrokeLabel, ...] = (
    StrokeLabel("發短球", "short service", "short serve", "serve short"),
    StrokeLabel("發長球", "long service", "long serve", "serve long"),
    StrokeLabel("撲球", "rush", "rush", "rush shot"),
    StrokeLabel("殺球", "smash", "smash", "smash"),
    StrokeLabel("點扣", "wrist smash", "smash", "smash"),
    StrokeLabel("長球", "clear", "clear", "clear"),
    StrokeLabel("切球", "drop", "drop", "drop net"),
    StrokeLabel("過渡切球", "passive drop", "drop", "drop net"),
    StrokeLabel("推球", "push", "push", "push shot"),
    StrokeLabel("挑球", "lob", "lob", "net pop"),
    StrokeLabel("防守回挑", "defensive return lob", "lob", "net pop"),
    StrokeLabel("放小球", "net shot", "net shot", "net lift"),
    StrokeLabel("擋小球", "return net", "return net", "backstop"),
    StrokeLabel("勾球", "cross-court net shot", "cross-court net shot", "cross-court net shot"),
    StrokeLabel("平球", "drive", "drive", None),
    StrokeLabel("小平球", "driven flight", "drive", None),
    StrokeLabel("後場抽平球", "back-court drive", "drive", None),
    StrokeLabel("防守回抽", "defensive return drive", "drive", None),
)
LABEL_SPELLING_VARIANTS = {"過度切球": "過渡切球"}
UNKNOWN_LABEL = "未知球種"

BY_ZH = {s.zh: s for s in STROKE_LABELS}
STROKES: tuple[str, ...] = tuple(dict.fromkeys(s.stroke for s in STROKE_LABELS))
REFERENCE_STROKES: tuple[str, ...] = tuple(
    dict.fromkeys(s.stroke for s in STROKE_LABELS if s.reference_en is not None)
)  # the reference system's 11 classes, in product names

# Zone ids follow the reference system's hit-area ids; see core.court.zone_of for the geometry.
ZONE_PHRASES: dict[int, str] = {
    1: "at the right side of the net",
    2: "at the left side of the net",
    3: "in the right backcourt",
    4: "in the left backcourt",
    5: "in the middle",
    7: "at the net",
    9: "in the backcourt",
}
REFERENCE_ZONE_PHRASES: dict[int, str] = {**ZONE_PHRASES, 6: "in the middle", 8: "in the middle"}
# What a coach's zone word covers in questions: "the backcourt" is every back cell (left, centre,
# right), "the net" every front cell; a caption's "in the backcourt" (zone 9, the centre cell, as
# the reference system labels it) is inside the family it names.
ZONE_FAMILIES: dict[int, tuple[int, ...]] = {9: (3, 4, 9), 7: (1, 2, 7)}
SIDE_FAMILIES: dict[str, tuple[int, ...]] = {"left": (2, 4), "right": (1, 3)}  # as the camera sees the court
SIDES = ("upper", "bottom")


def stroke_label(zh: str) -> StrokeLabel | None:
    """The label for a ShuttleSet type, spelling variants mapped; None if unknown or unseen."""
    return BY_ZH.get(LABEL_SPELLING_VARIANTS.get(zh.strip(), zh.strip()))


def caption(side: str, stroke: str, zone: int) -> str:
    """The stage-1 caption, e.g. 'upper player hits a smash in the backcourt'."""
    return f"{side} player hits a {stroke} {ZONE_PHRASES[zone]}"
