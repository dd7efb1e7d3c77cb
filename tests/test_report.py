"""Rally summaries, the match report and the score chart (core.report) checked against a direct
read of the real ShuttleSet set files (csv module): score, point winner, stroke count, the ending
stroke and its reason; the formats and the command line."""
from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from core.indexer import add_match
from core.outcome import REASONS
from core.report import (ERROR_WORDS, WINNER_WORDS, build_parser, load_match, main, match_report, render,
                         score_figure)
from core.store import StrokeStore
from core.vocab import STROKES, stroke_label
from tests.test_index import write_detected_csv

EXCERPT = Path(__file__).parent / "data" / "shuttleset"
ALL_SETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "shuttleset"  # beside the repository


# ---------------------------------------------------------------- the CSV, read directly


def csv_rallies(set_file: Path) -> dict[int, list[dict]]:
    """rally -> its rows, in file order."""
    with open(set_file, newline="", encoding="utf-8-sig") as f:
        out: dict[int, list[dict]] = defaultdict(list)
        for row in csv.DictReader(f):
            out[int(float(row["rally"]))].append(row)
    return dict(out)


def csv_players(root: Path, match: str) -> dict[str, str]:
    with open(root / "match.csv", newline="", encoding="utf-8-sig") as f:
        row = next(r for r in csv.DictReader(f) if r["video"] == match)
    return {"A": row["winner"].strip(), "B": row["loser"].strip()}


def csv_facts(rows: list[dict], previous: list[dict] | None) -> dict:
    """What the set file says about one rally (`previous`: the rows of the rally before it in the file).
    The outcome is read from the last row that carries one (a few rallies have a stray row after it)."""
    last = next((r for r in reversed(rows) if r["getpoint_player"]), rows[-1])
    score = lambda row: (int(float(row["roundscore_A"])), int(float(row["roundscore_B"])))  # noqa: E731
    after = score(rows[-1])
    winner = last["getpoint_player"] or None
    if winner is None:  # no outcome labels: the player whose score rose by the one point (from 0-0 at first)
        before = score(previous[-1]) if previous else (0, 0)
        rose = [k for k, a, b in zip("AB", after, before) if a - b == 1]
        winner = rose[0] if len(rose) == 1 and sum(after) - sum(before) == 1 else None
    label = last["lose_reason"] or last["win_reason"]
    label_of = stroke_label(last["type"])
    return {"strokes": len(rows), "after": after, "winner": winner, "hitter": last["player"],
            "before": (after[0] - (winner == "A"), after[1] - (winner == "B")) if winner else None,
            "kind": None if not last["getpoint_player"] else "winner" if last["player"] == winner else "error",
            "reason": REASONS.get(label) if last["getpoint_player"] and label else None,
            "stroke": label_of.stroke if label_of else None,
            "types": Counter(stroke_label(r["type"]).stroke for r in rows if stroke_label(r["type"]))}


# ---------------------------------------------------------------- checks


def check_rally(r: dict, want: dict, names: dict[str, str]) -> None:
    where = (r["set"], r["rally"])
    assert r["strokes"] == want["strokes"], where
    assert tuple(r["score_after"]) == want["after"], where
    assert r["winner"] == want["winner"], where
    e = r["ending"]
    assert (e["player"], e["stroke"], e["kind"], e["reason"]) == (want["hitter"], want["stroke"], want["kind"],
                                                                 want["reason"]), where
    text = r["summary"]
    assert f"({want['strokes']} stroke" in text, text
    assert f"{names[want['hitter']]}'s {want['stroke'] or 'stroke'}" in text, text
    if want["winner"]:
        b, a = want["before"], want["after"]
        assert text.startswith(f"Rally {r['rally']}, {b[0]}-{b[1]} "), text
        assert text.endswith(f"Point {names[want['winner']]}, {a[0]}-{a[1]}."), text
    if want["kind"] == "error" and want["reason"] in ERROR_WORDS:
        assert ERROR_WORDS[want["reason"]] in text, text
    elif want["kind"] == "winner" and want["reason"] in WINNER_WORDS:
        other = names["B" if want["hitter"] == "A" else "A"]
        assert WINNER_WORDS[want["reason"]].format(opponent=other) in text, text
    elif want["kind"]:  # a reason that contradicts who won: quoted as annotated
        assert f"{'won' if want['kind'] == 'winner' else 'lost'} the point" in text, text
        assert want["reason"] is None or f"(annotated reason: {want['reason']})" in text, text
    # no number that the rows do not hold: scores, the rally, the count, counts of its stroke types
    known = {r["rally"], want["strokes"], *want["after"], *(want["before"] or ())}
    for n in map(int, re.findall(r"\d+", text.replace("cross-court", ""))):
        assert n in known or n < want["strokes"], (n, text)
    for stroke in STROKES:
        for n in re.findall(rf"(\d+) {stroke}(?:e?s)\b", text):
            assert int(n) <= want["types"][stroke], (stroke, n, text)


def check_match(store: StrokeStore, root: Path, match: str) -> int:
    """Every set's rallies and tallies of one indexed match against its set files; the rallies checked."""
    facts = load_match(store, match)
    report = match_report(facts)
    names = csv_players(root, match)
    assert report["match"]["players"] == names
    by_key = {(r["set"], r["rally"]): r for r in report["rallies"]}
    checked = 0
    for set_file in sorted((root / match).glob("set*.csv")):
        set_no = int(re.search(r"\d+", set_file.stem).group())
        rallies = csv_rallies(set_file)
        order = sorted(rallies)
        wants = {k: csv_facts(rallies[k], rallies[order[i - 1]] if i else None) for i, k in enumerate(order)}
        assert sorted(k for s, k in by_key if s == set_no) == sorted(rallies)
        for rally, want in wants.items():
            check_rally(by_key[(set_no, rally)], want, names)
            checked += 1
        scope = next(s for s in report["scopes"] if s["set"] == set_no)
        for k in "AB":
            won = sum(w["winner"] == k for w in wants.values())
            assert scope["points"][k]["won"] == won
            assert scope["points"][k]["lost"] == sum(w["winner"] not in (None, k) for w in wants.values())
            ending = Counter((w["stroke"] or "unknown type", w["kind"] + "s") for w in wants.values()
                             if w["kind"] and w["hitter"] == k)
            assert {(t, kind): n for t, c in scope["ending_strokes"][k].items() for kind, n in c.items()} == ending
            serves = Counter(stroke_label(v[0]["type"]).stroke if stroke_label(v[0]["type"]) else "unknown type"
                             for v in rallies.values() if v[0]["player"] == k)
            assert {t: sv["count"] for t, sv in scope["serves"][k].items()} == serves
        assert scope["longest"][0]["strokes"] == max(w["strokes"] for w in wants.values())
        assert tuple(scope["last_score"]) == wants[max(wants)]["after"]
    return checked


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory) -> StrokeStore:
    store = StrokeStore(tmp_path_factory.mktemp("report") / "excerpt.sqlite")
    for f in sorted(EXCERPT.glob("*/set*.csv")):
        add_match(store, f)
    return store


def test_every_rally_and_set_of_the_excerpt_matches_its_csv(excerpt):
    match = next(EXCERPT.glob("*/set1.csv")).parent.name
    assert check_match(excerpt, EXCERPT, match) == sum(len(csv_rallies(f)) for f in EXCERPT.glob("*/set*.csv"))


@pytest.mark.skipif(not os.environ.get("SHUTTLE_LENS_ALL_SETS") or not ALL_SETS.is_dir(),
                    reason="set SHUTTLE_LENS_ALL_SETS=1 to check every set of the full ShuttleSet data (minutes)")
def test_every_rally_and_set_of_the_real_data_matches_its_csv(tmp_path):
    total = 0
    for folder in sorted(p for p in ALL_SETS.iterdir() if p.is_dir()):
        store = StrokeStore(tmp_path / f"{folder.name}.sqlite")
        for f in sorted(folder.glob("set*.csv")):
            add_match(store, f)
        total += check_match(store, ALL_SETS, folder.name)
        store.close()
    assert total > 3000


def test_a_corrected_caption_names_the_stroke_and_its_source(tmp_path):
    store = StrokeStore(tmp_path / "one.sqlite")
    add_match(store, next(EXCERPT.glob("*/set1.csv")))
    last = [s for s in store.strokes() if s["rally"] == 1][-1]
    assert last["stroke"] == "clear"
    store.set_caption(last["id"], "bottom player hits a drop at the net")
    rally = match_report(load_match(store))["rallies"][0]
    assert rally["ending"]["stroke"] == "drop" and rally["ending"]["zone"] == "at the net"
    assert rally["sources"] == {"annotation": 4, "corrected": 1}
    assert "Kento MOMOTA's drop at the net went out" in rally["summary"]


def test_detected_strokes_are_named_as_detected_and_nothing_is_invented(tmp_path):
    store = StrokeStore(tmp_path / "det.sqlite")
    add_match(store, write_detected_csv(tmp_path / "vid" / "set1.csv"))
    report = match_report(load_match(store))
    assert report["source"]["detected"] == 6 and report["source"]["by_caption_source"] == {"none": 6}
    assert "6 of them detected" in report["source"]["text"]
    first = report["rallies"][0]
    assert first["winner"] is None and first["score_after"] is None
    assert first["summary"] == "Rally 1 (3 strokes): Ann served; after 1 stroke, Ann's stroke ended the rally."
    # the model's captions name the types and zones of the strokes they caption, and nothing else
    set_id = store.sets()[0]["id"]
    with store.transaction() as db:
        db.executemany("UPDATE strokes SET model_caption=? WHERE set_id=? AND frame=?",
                       [("bottom player hits a short serve in the backcourt", set_id, 100),
                        ("bottom player hits a smash in the backcourt", set_id, 200)])
    report = match_report(load_match(store))
    assert report["source"]["by_caption_source"] == {"model": 2, "none": 4}
    assert "stroke types and zones from model captions (2)" in report["source"]["text"]
    assert report["rallies"][0]["summary"] == ("Rally 1 (3 strokes): Ann played a short serve; after 1 stroke, "
                                               "Ann's smash in the backcourt ended the rally.")


# ---------------------------------------------------------------- formats, chart, command line


def test_json_round_trips_to_the_same_report(excerpt):
    report = match_report(load_match(excerpt))
    again = json.loads(render(report, "json"))
    assert again == report
    assert render(again, "md") == render(report, "md")


def test_the_chart_has_one_point_per_rally_with_its_set_and_rally(excerpt):
    report = match_report(load_match(excerpt))
    fig = score_figure(report)
    match = next(EXCERPT.glob("*/set1.csv")).parent.name
    traces = iter(fig.data)
    for set_file in sorted((EXCERPT / match).glob("set*.csv")):
        set_no = int(re.search(r"\d+", set_file.stem).group())
        rallies = csv_rallies(set_file)
        for k, col in enumerate(("roundscore_A", "roundscore_B")):
            t = next(traces)
            assert [tuple(c) for c in t.customdata] == [(set_no, r) for r in sorted(rallies)]
            assert list(t.y) == [int(float(rallies[r][-1][col])) for r in sorted(rallies)]
    assert next(traces, None) is None
    axes = [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
    assert axes and all(a.dtick in (1, 5) and a.tick0 == 1 for a in axes)  # whole rallies, no 1.2 ticks


def test_the_command_writes_each_format_and_refuses_what_is_not_there(excerpt, tmp_path, capsys):
    db = str(excerpt.path)
    for fmt in ("md", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        assert main(["--db", db, "--format", fmt, "--out", str(out)]) == 0
        text = out.read_text(encoding="utf-8")
        assert "Point CHOU Tien Chen, 1-4." in text
    assert json.loads((tmp_path / "report.json").read_text())["match"]["players"]["A"] == "Kento MOMOTA"
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]*\ssrc=", page)  # plotly.js inlined: the page opens offline
    assert main(["--db", db, "--rally", "5", "--format", "json"]) == 0
    assert [r["rally"] for r in json.loads(capsys.readouterr().out)] == [5]
    for args, message in ((["--rally", "99"], "error: no rally 99 in match 1; its rallies are 1, 3, 5, 20"),
                          (["--match", "7"], "error: no match 7 in the index"),
                          (["--rally", "5", "--set", "2"], "error: no rally 5 of set 2")):
        assert main(["--db", db, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    missing = tmp_path / "none.sqlite"
    assert main(["--db", str(missing)]) == 2 and not missing.exists()
    assert capsys.readouterr().err == f"error: no index at {missing}\n"
    assert build_parser().format_usage().startswith("usage: python -m core.report ")
