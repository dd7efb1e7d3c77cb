"""The questions coaches ask, answered exactly: each family against a direct reading of the set
files' own columns (csv module; sides from the importer, zones from core.court's geometry), on
the real excerpt and, with SHUTTLE_LENS_ALL_SETS=1, on every ShuttleSet set.

Families: point outcomes (winners, errors, into the net, out, long, wide, rally-ending), technique
(backhand, forehand, around the head, above / below the net), landing zones against hit zones
with zone families, sequences (after, replies to, followed by), exclusions and alternatives,
rally lengths, rallies won or lost by a player, the return of serve, and the README's and the app's example questions."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from core.annotations import load_annotations
from core.court import COURT_LENGTH, COURT_WIDTH, SINGLES_INSET, zone_of
from core.fields import FieldParser
from core.indexer import add_match
from core.query import QueryEngine
from core.store import StrokeStore
from ui.analyze_tab import EXAMPLES

DATA = Path(__file__).parent / "data" / "shuttleset"
SET_FILES = sorted(DATA.glob("*/set*.csv"))
ALL_SETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "shuttleset"  # beside the repository
BACK, FRONT = {3, 4, 9}, {1, 2, 7}
NET_ERRORS, OUT = {"掛網", "未過網"}, "出界"


def rows_of(set_files: list[Path]) -> list[dict]:
    """Every stroke as the CSV states it, with its side (the importer's vote) and its hit and
    landing zones (the court corners of homography.csv and core.court.zone_of)."""
    out = []
    for f in set_files:
        table = load_annotations(f)
        with open(f, encoding="utf-8") as fh:
            raw = list(csv.DictReader(fh))
        last = {}
        for r in raw:
            last[r["rally"]] = max(last.get(r["rally"], 0), int(float(r["ball_round"])))
        raw_of = {(int(float(r["rally"])), int(float(r["ball_round"])), int(float(r["frame_num"]))): r for r in raw}
        for s in table.strokes:  # the importer may order rows otherwise than the file
            r = raw_of[(s.rally, s.ball_round, s.frame)]
            land = None
            if table.court is not None and r["landing_x"] and r["landing_y"]:
                land = tuple(float(v) for v in table.court.to_court(float(r["landing_x"]), float(r["landing_y"])))
            out.append({
                "key": (s.set, s.rally, s.ball_round, s.frame), "side": s.side, "type": r["type"],
                "name": table.players.get(r["player"]), "player": r["player"], "hit_zone": s.zone,
                "land_zone": zone_of(*land) if land else None, "land": land,
                "last": int(float(r["ball_round"])) == last[r["rally"]], "getpoint": r["getpoint_player"],
                "lose": r["lose_reason"], "backhand": r["backhand"].startswith("1"),
                "annotated_hand": "backhand" in r, "aroundhead": r["aroundhead"].startswith("1"),
                "height": {"1": "above", "2": "below"}.get(r["hit_height"].split(".")[0]),
                "score": (int(float(r["roundscore_A"])), int(float(r["roundscore_B"]))),
            })
    return out


def won(r: dict) -> bool:
    return r["last"] and r["getpoint"] in ("A", "B") and r["getpoint"] == r["player"]


def lost(r: dict) -> bool:
    return r["last"] and r["getpoint"] in ("A", "B") and r["getpoint"] != r["player"]


def long_(r: dict) -> bool:
    return r["land"] is not None and not 0 <= r["land"][1] <= COURT_LENGTH


def wide(r: dict) -> bool:
    return r["land"] is not None and not SINGLES_INSET <= r["land"][0] <= COURT_WIDTH - SINGLES_INSET


def link_rallies(rows: list[dict]) -> list[dict]:
    """Each row's previous stroke in its rally (`prev`, None for a serve) and its rally's length."""
    by_key = {(r["key"][0], r["key"][1], r["key"][2]): r for r in rows}
    length: dict[tuple, int] = {}
    for r in rows:
        length[r["key"][:2]] = length.get(r["key"][:2], 0) + 1
    name_of = {r["player"]: r["name"] for r in rows if r["name"]}
    winner = {r["key"][:2]: name_of.get(r["getpoint"]) for r in rows if r["last"] and r["getpoint"] in ("A", "B")}
    after: dict[tuple, tuple] = {}  # the score after each rally: its last row's
    for r in sorted(rows, key=lambda r: r["key"]):
        after[r["key"][:2]] = r["score"]
    before, prev_score = {}, {}
    for (set_no, rally), score in sorted(after.items()):  # the score before = after the previous rally
        before[(set_no, rally)] = prev_score.get(set_no, (0, 0))
        prev_score[set_no] = score
    final: dict[int, tuple] = {}
    for (set_no, rally), score in sorted(after.items()):
        final[set_no] = score
    def games(set_no: int) -> tuple[int, int]:  # games A and B won before this set
        done = [final[s] for s in final if s < set_no]
        return (sum((a >= 21 and a - b >= 2) or a == 30 for a, b in done),
                sum((b >= 21 and b - a >= 2) or b == 30 for a, b in done))
    first_attack: dict[tuple, tuple] = {}
    for r in sorted(rows, key=lambda r: r["key"]):
        if r["type"] in SMASHES | RUSH:
            first_attack.setdefault(r["key"][:2], r["key"])
    for r in rows:
        r["first_attack"] = first_attack.get(r["key"][:2]) == r["key"]
        r["score_before"] = before[r["key"][:2]]
        r["games_before"] = games(r["key"][0])
        r["prev"] = by_key.get((r["key"][0], r["key"][1], r["key"][2] - 1))
        r["rally_len"] = length[r["key"][:2]]
        r["rally_winner"] = winner.get(r["key"][:2])
    ends = {r["key"][:2]: r for r in rows if r["last"] and r["getpoint"] in ("A", "B")}
    other = {"upper": "bottom", "bottom": "upper"}
    for r in rows:  # the end the rally's winner played it from: the last hitter's, or the other one
        end = ends.get(r["key"][:2])
        r["winner_side"] = None if end is None else end["side"] if won(end) else other.get(end["side"])
    return rows


def prev_is(r: dict, types: set, name: str | None = None) -> bool:
    p = r["prev"]
    return p is not None and p["type"] in types and (name is None or p["name"] == name)


def game_point(a: int, b: int) -> bool:
    """One player a point from the game: 20 or more and ahead, or 29."""
    return (a >= 20 and a > b) or (b >= 20 and b > a) or 29 in (a, b)


def match_point(score: tuple[int, int], games: tuple[int, int]) -> bool:
    """A game point of a player who has already won a game."""
    a, b = score
    return ((a >= 20 and a > b) or a == 29) and games[0] >= 1 or ((b >= 20 and b > a) or b == 29) and games[1] >= 1


SMASHES = {"殺球", "點扣"}
LOBS = {"挑球", "防守回挑"}
RUSH = {"撲球"}
LONG_SERVE = {"發長球"}
CLEARS = {"長球"}
DROPS = {"切球", "過渡切球", "過度切球"}  # ShuttleSet spells the passive drop both ways


def families(name: str, other: str) -> dict:
    """Question -> the direct filter of the rows it describes, for a player of the set (and the other one)."""
    return {
        f"what does {name} play after a smash": lambda r: r["name"] == name and prev_is(r, SMASHES),
        f"{name}'s replies to {other}'s drops": lambda r: r["name"] == name and prev_is(r, DROPS, other),
        "smash followed by a net kill": lambda r: r["type"] in RUSH and prev_is(r, SMASHES),
        "after a long serve": lambda r: prev_is(r, LONG_SERVE),
        f"{name}'s strokes except lobs": lambda r: r["name"] == name and r["type"] not in LOBS,
        "not clears": lambda r: r["type"] not in CLEARS,
        "rallies of more than 20 shots": lambda r: r["rally_len"] > 20,
        "rallies of fewer than 5 strokes": lambda r: r["rally_len"] < 5,
        "long rallies": lambda r: r["rally_len"] >= 15,
        f"short rallies won by {name}": lambda r: r["rally_len"] <= 4 and r["rally_winner"] == name,
        "rallies lost by the bottom player": lambda r: r["winner_side"] == "upper",
        "points won by the upper player": lambda r: r["winner_side"] == "upper",
        "the first rally of each game": lambda r: r["key"][1] == 1,
        f"{name} put it in the net": lambda r: r["name"] == name and lost(r) and r["lose"] in NET_ERRORS,
        f"returns of serve by {name}": lambda r: r["name"] == name and r["key"][2] == 2,
        "smashes or drops": lambda r: r["type"] in SMASHES | DROPS,
        f"rallies won by {name}": lambda r: r["rally_winner"] == name,
        "strokes at game point": lambda r: game_point(*r["score_before"]),
        f"{name}'s first attacking shot": lambda r: r["name"] == name and r["first_attack"],
        "strokes at match point": lambda r: match_point(r["score_before"], r["games_before"]),
        f"smashes in points lost by {name}": lambda r: r["type"] in SMASHES and r["rally_winner"] not in (None, name),
        f"{name}'s winners": lambda r: r["name"] == name and won(r),
        f"{name}'s errors": lambda r: r["name"] == name and lost(r),
        f"{name}'s errors into the net": lambda r: r["name"] == name and lost(r) and r["lose"] in NET_ERRORS,
        "smashes that won the point": lambda r: r["type"] in SMASHES and won(r),
        "clears hit out": lambda r: r["type"] in CLEARS and lost(r) and r["lose"] == OUT,
        "errors that went long": lambda r: lost(r) and r["lose"] == OUT and long_(r),
        "wide errors": lambda r: lost(r) and r["lose"] == OUT and wide(r),
        "rally-ending smashes": lambda r: r["type"] in SMASHES and r["last"],
        f"backhand strokes by {name}": lambda r: r["name"] == name and r["backhand"],
        "forehand drops": lambda r: r["type"] in DROPS and r["annotated_hand"] and not r["backhand"],
        "around the head smashes": lambda r: r["type"] in SMASHES and r["aroundhead"],
        f"{name}'s strokes above the net": lambda r: r["name"] == name and r["height"] == "above",
        "clears below the net": lambda r: r["type"] in CLEARS and r["height"] == "below",
        "smashes into the backcourt": lambda r: r["type"] in SMASHES and r["land_zone"] in BACK,
        "smashes from the backcourt": lambda r: r["type"] in SMASHES and r["hit_zone"] in BACK,
        "drops to the net": lambda r: r["type"] in DROPS and r["land_zone"] in FRONT,
        "drops that land in the right front court": lambda r: r["type"] in DROPS and r["land_zone"] == 1,
        "when does the bottom player smash from the backcourt?":
            lambda r: r["side"] == "bottom" and r["type"] in SMASHES and r["hit_zone"] in BACK,
        "when does the bottom player smash into the backcourt?":
            lambda r: r["side"] == "bottom" and r["type"] in SMASHES and r["land_zone"] in BACK,
    }


def check_families(index: StrokeStore, rows: list[dict]) -> int:
    engine = QueryEngine(index)
    names = sorted({r["name"] for r in rows if r["name"]})
    asked = 0
    for name in names:
        other = next((n for n in names if n != name), name)
        for question, want in families(name, other).items():
            ans = engine.ask(question, paths=("structured",), limit=100_000)
            assert ans.covered_by_fields, (question, ans.fields, ans.leftover)
            got = sorted((r.set, r.rally, r.stroke, r.frame) for r in ans.results)
            assert got == sorted(r["key"] for r in rows if want(r)), question
            asked += 1
    return asked


def check_rallies(index: StrokeStore, rows: list[dict]) -> int:
    """Questions whose answer is rallies: each rally once, with its length, point winner and score
    before it as the CSV has them."""
    engine = QueryEngine(index)
    by_rally: dict[tuple, list[dict]] = {}
    for r in rows:
        by_rally.setdefault(r["key"][:2], []).append(r)
    names = sorted({r["name"] for r in rows if r["name"]})
    questions = {"rallies of more than 10 shots": lambda k, rs: len(rs) > 10,
                 "long rallies": lambda k, rs: len(rs) >= 15, "game points": lambda k, rs: game_point(*rs[0]["score_before"])}
    for name in names:
        questions[f"rallies won by {name}"] = lambda k, rs, n=name: rs[0]["rally_winner"] == n
    for question, want in questions.items():
        ans = engine.ask(question, paths=("structured",), limit=100_000)
        assert ans.covered_by_fields, question
        got = [(r.set, r.rally, r.shots, r.won_by, r.score) for r in ans.rallies]
        expected = [(k[0], k[1], len(rs), rs[0]["rally_winner"], "%d-%d" % rs[0]["score_before"])
                    for k, rs in sorted(by_rally.items()) if want(k, rs)]
        assert got == expected, question
        assert sum(r.shots for r in ans.rallies) == len(ans.results)  # every stroke of those rallies
    return len(questions)


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory):
    index = StrokeStore(tmp_path_factory.mktemp("coach") / "index.sqlite")
    for f in SET_FILES:
        add_match(index, f)
    return index, link_rallies(rows_of(SET_FILES))


def test_every_family_equals_a_direct_filter_of_the_excerpt(excerpt):
    index, rows = excerpt
    assert check_families(index, rows) >= 30
    assert any(won(r) for r in rows) and any(lost(r) and r["lose"] in NET_ERRORS for r in rows)
    assert any(r["backhand"] for r in rows) and any(r["land_zone"] in BACK for r in rows)


def test_answers_that_are_rallies_list_each_rally_with_its_facts(excerpt):
    index, rows = excerpt
    assert check_rallies(index, rows) >= 5
    engine = QueryEngine(index)
    assert not engine.ask("smashes in long rallies").rallies  # a stroke field: the answer is strokes
    assert not engine.ask("strokes at game point").rallies


def test_a_misspelt_name_or_stroke_is_read_as_the_nearest_and_said(excerpt):
    index, rows = excerpt
    engine = QueryEngine(index)
    checked = 0
    for name in sorted({r["name"] for r in rows if r["name"]}):
        word = max(name.split(), key=len)
        if len(word) < 6:  # a short name is too near other words to be read through a typo
            continue
        typo = word[:-2] + word[-1] + word[-2]  # the last two letters swapped
        right, wrong = (engine.ask(f"smashes by {w}", paths=("structured",)) for w in (word, typo))
        assert wrong.results == right.results and right.results and (typo.lower(), name) in wrong.corrected
        checked += 1
    assert checked >= 1
    misspelt = engine.ask("cleers from the backcort", paths=("structured",))
    assert misspelt.results == engine.ask("clears from the backcourt", paths=("structured",)).results
    assert misspelt.corrected == [("cleers", "clear"), ("backcort", "backcourt")]
    # an English word is never read as a stroke word ("sort" is not "short")
    assert not engine.ask("sort the smashes", paths=("structured",)).corrected


def test_words_no_field_reads_are_named_not_dropped_silently(excerpt):
    index, _ = excerpt
    engine = QueryEngine(index)
    ans = engine.ask("spicy smashes", paths=("structured",))
    assert ans.ignored == ["spicy"] and ans.results == engine.ask("smashes", paths=("structured",)).results
    assert engine.ask("smashes", paths=("structured",)).ignored == []


@pytest.mark.parametrize("question, words", [
    ("net shots in rally 3", "net shots in rally 3"),
    ("smashes by the bottom player from the backcourt in set 2", "smashes by the bottom player hit from the backcourt in set 2"),
    ("Kento MOMOTA's errors into the net", "errors into the net by Kento MOMOTA"),
    ("smashes that won the point", "smashes that won the point"),
    ("clears hit out", "clears hit out"),
    ("drops that land in the right front court", "drops landing in the right side of the net"),
    ("returns of serve at game point", "strokes as the return of serve at game point"),
    ("what does Kento MOMOTA play after a smash", "strokes by Kento MOMOTA after smashes"),
    ("rallies lost by the bottom player", "strokes in rallies lost by the bottom player"),
    ("Kento MOMOTA's strokes except lobs", "strokes except lobs by Kento MOMOTA"),
])
def test_an_answer_says_what_it_looked_for_in_a_coach_s_words(question, words):
    from core.fields import describe

    assert describe(FieldParser(["Kento MOMOTA", "CHOU Tien Chen"]).parse(question).fields.as_dict()) == words


def test_landing_and_hit_zones_differ_and_families_cover_their_cells(excerpt):
    index, rows = excerpt
    engine = QueryEngine(index)
    into = {(r.set, r.rally, r.stroke, r.frame) for r in engine.ask("smashes into the backcourt").results}
    from_ = {(r.set, r.rally, r.stroke, r.frame) for r in engine.ask("smashes from the backcourt").results}
    assert into != from_  # a smash is hit from the back and lands anywhere but there, mostly
    centre = {r["key"] for r in rows if r["type"] in SMASHES and r["hit_zone"] == 9}
    assert centre < from_  # the family holds more than the centre cell
    fields = engine.ask("when does the bottom player smash into the backcourt?").fields
    assert fields["landing_zones"] == [3, 4, 9] and "zones" not in fields


def test_the_app_s_example_questions_are_understood_and_answered_on_the_demo_set(tmp_path):
    index = StrokeStore(tmp_path / "demo.sqlite")
    add_match(index, SET_FILES[0])  # the app's demo is set 1 of the excerpt
    engine = QueryEngine(index)
    for question in EXAMPLES:
        ans = engine.ask(question, paths=("structured",))
        assert ans.covered_by_fields and ans.results, question


def test_captions_keep_the_one_cell_their_zone_phrase_names():
    from core.query import caption_fields
    from core.vocab import ZONE_PHRASES, caption

    for zone in ZONE_PHRASES:
        assert caption_fields(caption("bottom", "drop", zone)) == ("bottom", "drop", zone)


def test_reference_phrasing_keeps_one_cell_per_zone_word(excerpt):
    index, _ = excerpt
    engine = QueryEngine(index)
    coach = engine.ask("Which shot lands in the backcourt?").fields
    reference = engine.ask("Which shot lands in the backcourt?", reference=True).fields
    assert coach == {"landing_zones": [3, 4, 9]} and reference == {"zones": [9]}


@pytest.mark.skipif(not os.environ.get("SHUTTLE_LENS_ALL_SETS") or not ALL_SETS.is_dir(),
                    reason="set SHUTTLE_LENS_ALL_SETS=1 to check every set of the full ShuttleSet data (minutes)")
def test_every_family_on_every_real_set(tmp_path):
    total = match_points = 0
    for match in sorted(p for p in ALL_SETS.iterdir() if p.is_dir()):  # one index per match: its sets together
        sets = sorted(match.glob("set*.csv"))
        index = StrokeStore(tmp_path / f"{match.name}.sqlite")
        for f in sets:
            add_match(index, f)
        rows = link_rallies(rows_of(sets))
        total += check_families(index, rows) + check_rallies(index, rows)
        match_points += sum(match_point(r["score_before"], r["games_before"]) for r in rows)
        index.close()
    assert total > 0 and match_points > 0  # the match-point family was not checked on nothing


def test_counting_questions_count_the_strokes_behind_them_by_player_or_stroke(excerpt):
    index, rows = excerpt
    engine = QueryEngine(index)
    names = sorted({r["name"] for r in rows if r["name"]})
    ans = engine.ask("who hit more clears")
    want = sorted(((n, sum(r["name"] == n and r["type"] in CLEARS for r in rows)) for n in names), key=lambda p: -p[1])
    assert ans.count_by == "player" and ans.counts == [p for p in want if p[1]]
    assert sum(n for _, n in ans.counts) == ans.total
    ans = engine.ask(f"how many smashes did {names[0]} win points with")
    assert ans.covered_by_fields and ans.total == sum(r["name"] == names[0] and r["type"] in SMASHES and won(r)
                                                      for r in rows)
    ans = engine.ask(f"{names[0]}'s most common serve")
    assert ans.count_by == "stroke" and ans.counts[0][1] >= ans.counts[-1][1]
    assert {k for k, _ in ans.counts} <= {"short serve", "long serve"} and sum(n for _, n in ans.counts) == ans.total


def test_outcome_tags_need_a_rally_s_last_stroke(excerpt):
    index, rows = excerpt
    engine = QueryEngine(index)
    ends = engine.ask("rally-ending shots", paths=("structured",), limit=100_000).results
    assert len(ends) == len({(r["key"][0], r["key"][1]) for r in rows})  # one per rally
    assert all(r.stroke >= 1 for r in ends)
