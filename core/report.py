"""The match in words: a summary of every rally, a match report and a score-progression chart,
built from the stroke index alone.

    python -m core.report --db workspace/index.sqlite [--match ID] [--set S] [--rally N]
                          [--format md|json|html] [--out FILE]

Where the facts come from (every number and name in the text is read from the index's rows):
  - players: the matches table (player_a, player_b), else the strokes' player names, else
    "player A" / "player B", else the side ("the upper player");
  - a stroke's type and zone: the first caption source that states them, as questions read them
    (a coach's corrected caption > the annotation > the model's caption; core.query.caption_fields
    reads caption text); unknown types and zones are left out, never guessed;
  - score: the rallies table's score after each rally (player A first); the score before it is
    the score after with the point winner's point taken off;
  - the point winner and how the point ended: core.outcome on the rally's last annotated stroke;
    a set without outcome labels (detected strokes) takes the winner from the score, when it rose
    by one point for exactly one player;
  - zones are hit zones (core.vocab.ZONE_PHRASES); left and right as the camera sees the court.

The text is written from templates. With `--rewrite MODEL` (or the Summary tab's button) a loaded
language model rewrites each rally's summary, and core.rewrite keeps a rewrite only when it states
exactly the template's numbers and names.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.outcome import ERROR, WINNER, Outcome, outcome
from core.query import caption_fields
from core.store import IndexStoreError, StrokeStore
from core.vocab import ZONE_PHRASES

FORMATS = ("md", "json", "html")
LONGEST = 5  # rallies listed as the longest
MIDDLE_TYPES = 3  # stroke types named in a rally's middle; the rest are counted together
ERROR_WORDS = {"net": "hit the net", "not over": "did not get over the net", "out": "went out",
               "fault": "was a fault", "misjudged": "was misjudged"}
WINNER_WORDS = {"landed": "landed in", "misjudged": "was left by {opponent} and landed in"}
POINT_KEYS = ("won", "won_by_winners", "won_by_opponent_errors", "lost", "lost_by_errors", "lost_by_opponent_winners")
SOURCE_WORDS = {"corrected": "corrected captions", "annotation": "annotations", "model": "model captions",
                "none": "no caption"}


class ReportError(ValueError):
    """A match or rally that is not in the index; the message says which ones are."""


# ---------------------------------------------------------------- facts from the index


@dataclass
class StrokeFacts:
    ball_round: int
    player: str | None  # 'A' | 'B'
    who: str  # the hitter in words
    side: str | None
    stroke: str | None  # product class; None when no source states it
    zone: int | None
    source: str  # 'corrected' | 'annotation' | 'model' | 'none': where the type and zone came from
    detected: bool  # a detected hit (a confidence, no annotated type, not added by an edit)
    landing_m: tuple[float, float] | None
    labels: tuple  # (getpoint, win_reason, lose_reason) as annotated on this stroke


@dataclass
class RallyFacts:
    set_no: int
    rally: int
    strokes: list[StrokeFacts]
    score_after: tuple[int, int] | None
    score_before: tuple[int, int] | None
    winner: str | None
    ending: StrokeFacts | None  # the stroke that ended the point (carries the outcome labels)
    outcome: Outcome
    start_s: float | None
    summary: str = ""
    end_s: float | None = None


@dataclass
class MatchFacts:
    id: int
    name: str
    names: dict[str, str]  # 'A' / 'B' -> the name used in the text
    rallies: list[RallyFacts] = field(default_factory=list)


def _names(m: dict, strokes: list[dict]) -> dict[str, str]:
    found = {s["player"]: s["player_name"] for s in strokes if s.get("player") and s.get("player_name")}
    return {k: m.get(col) or found.get(k) or f"player {k}" for k, col in (("A", "player_a"), ("B", "player_b"))}


def _caption(text: str) -> tuple[str | None, int | None]:
    return caption_fields(text)[1:]


def _type_and_zone(s: dict) -> tuple[str | None, int | None, str]:
    """(stroke, zone, source): each field from the first caption source that states it."""
    found = []
    if s.get("corrected"):
        found.append(("corrected", *_caption(s["corrected"])))
    if s.get("stroke") or s.get("ann_caption"):
        found.append(("annotation", s.get("stroke"), s.get("zone")))
    if s.get("model_caption"):
        found.append(("model", *_caption(s["model_caption"])))
    stroke = next((f[1] for f in found if f[1] is not None), None)
    zone = next((f[2] for f in found if f[2] is not None), None)
    source = next((f[0] for f in found if f[1] is not None or f[2] is not None), "none")
    return stroke, zone, source


def _stroke_facts(s: dict, names: dict[str, str]) -> StrokeFacts:
    stroke, zone, source = _type_and_zone(s)
    player = s.get("player") if s.get("player") in ("A", "B") else None
    who = names[player] if player else f"the {s['side']} player" if s.get("side") else "a player"
    land = (s["land_x"], s["land_y"]) if s.get("land_x") is not None and s.get("land_y") is not None else None
    return StrokeFacts(int(s["ball_round"]), player, who, s.get("side"), stroke, zone, source,
                       s.get("confidence") is not None and not s.get("type_zh") and s.get("edited") != "added", land,
                       (s.get("getpoint"), s.get("win_reason"), s.get("lose_reason")))


def _score(a, b) -> tuple[int, int] | None:
    return (int(a), int(b)) if a is not None and b is not None else None


def _rally_facts(set_no: int, r: dict, rows: list[dict], names: dict[str, str]) -> RallyFacts:
    strokes = [_stroke_facts(s, names) for s in rows]
    labelled = [s for s in strokes if s.labels[0] in ("A", "B")]
    ending = labelled[-1] if labelled else (strokes[-1] if strokes else None)
    out = (outcome(ending.player, *ending.labels, ending.landing_m) if ending and labelled
           else Outcome(None, None, None))
    after, before = _score(r["score_a"], r["score_b"]), _score(r["score_a_before"], r["score_b_before"])
    winner = out.winner
    if winner is None and after and before:  # no outcome labels: the score says who won, if it rose by one
        rose = [k for k, a, b in zip("AB", after, before) if a - b == 1]
        winner = rose[0] if len(rose) == 1 and sum(after) - sum(before) == 1 else None
    before = (after[0] - (winner == "A"), after[1] - (winner == "B")) if after and winner else None
    ends = [s["end_s"] for s in rows if s.get("end_s") is not None]
    return RallyFacts(set_no, int(r["rally"]), strokes, after, before, winner, ending, out, r.get("start_s"),
                      end_s=r.get("end_s") if r.get("end_s") is not None else max(ends, default=None))


def load_match(store: StrokeStore, match: int | str | None = None) -> MatchFacts:
    """The facts of one match (by id or name; None: the index's only match), every rally summarised."""
    matches = store.matches()
    if not matches:
        raise ReportError(f"{store.path} holds no match; index one first (python -m core.index)")
    listing = ", ".join(f"{m['id']} ({m['name']})" for m in matches)
    if match is None:
        if len(matches) > 1:
            raise ReportError(f"the index holds {len(matches)} matches; pick one with --match ID: {listing}")
        m = matches[0]
    else:
        m = next((m for m in matches if str(m["id"]) == str(match) or m["name"] == str(match)), None)
        if m is None:
            raise ReportError(f"no match {match} in the index; its matches are {listing}")
    strokes = store.strokes(int(m["id"]))
    names = _names(m, strokes)
    by_rally: dict[tuple[int, int], list[dict]] = {}
    for s in strokes:
        by_rally.setdefault((s["set_no"], s["rally"]), []).append(s)
    rallies = store.db.execute(
        "SELECT st.set_no, r.* FROM rallies r JOIN sets st ON st.id=r.set_id WHERE st.match_id=? "
        "ORDER BY st.set_no, r.rally", (int(m["id"]),)).fetchall()
    facts = MatchFacts(int(m["id"]), m["name"], names)
    for r in rallies:
        rows = by_rally.get((r["set_no"], r["rally"]), [])
        if rows:
            rally = _rally_facts(int(r["set_no"]), dict(r), rows, names)
            rally.summary = rally_summary(rally, names)
            facts.rallies.append(rally)
    return facts


# ---------------------------------------------------------------- a rally in words


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _plural(word: str, n: int) -> str:
    if n == 1:
        return _a(word)
    return f"{n} {word}" + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _shot(s: StrokeFacts) -> str:
    """'smash in the right backcourt', 'stroke' when the type is unknown."""
    return (s.stroke or "stroke") + (f" {ZONE_PHRASES[s.zone]}" if s.zone in ZONE_PHRASES else "")


def _middle(strokes: list[StrokeFacts], lead: str) -> str:
    """'after a lob and 3 clears': the strokes between the serve and the end, by type."""
    counts = Counter(s.stroke for s in strokes if s.stroke)
    named = counts.most_common(MIDDLE_TYPES)
    rest = len(strokes) - sum(n for _, n in named)
    parts = [_plural(t, n) for t, n in named]
    if rest:
        parts.append(f"{rest} {'other ' if parts else ''}stroke{'s' if rest > 1 else ''}")
    return f"{lead} {_join(parts)}"


def _ending(s: StrokeFacts, out: Outcome, names: dict[str, str]) -> str:
    """'Kento MOMOTA's lob in the left backcourt went out long'. A reason that contradicts who won
    (a few ShuttleSet points) is quoted as annotated."""
    text = f"{s.who}'s {_shot(s)} "
    if out.kind is None:
        return text + "ended the rally"
    if out.kind == ERROR and out.reason in ERROR_WORDS:
        return text + ERROR_WORDS[out.reason] + (f" {out.out}" if out.reason == "out" and out.out else "")
    if out.kind == WINNER and out.reason in WINNER_WORDS:
        opponent = names["B" if s.player == "A" else "A"]
        return text + WINNER_WORDS[out.reason].format(opponent=opponent)
    return text + ("won" if out.kind == WINNER else "lost") + " the point" + (
        f" (annotated reason: {out.reason})" if out.reason else "")


def _score_text(score: tuple[int, int]) -> str:
    return f"{score[0]}-{score[1]}"


def rally_summary(r: RallyFacts, names: dict[str, str]) -> str:
    """One or two sentences: 'Rally 5, 1-3 (24 strokes): CHOU Tien Chen played a long serve; after
    …, Kento MOMOTA's lob in the left backcourt went out. Point CHOU Tien Chen, 1-4.'"""
    n = len(r.strokes)
    head = f"Rally {r.rally}" + (f", {_score_text(r.score_before)}" if r.score_before else "")
    head += f" ({n} stroke{'s' if n != 1 else ''})"
    k = r.strokes.index(r.ending) if r.ending else n
    forced = k - 1 if r.ending and r.outcome.kind == ERROR and k > 0 else None  # the shot that drew the error
    parts = []
    if 0 not in (k, forced):
        first = r.strokes[0]
        parts.append(f"{first.who} " + (f"played {_a(first.stroke)}" if first.stroke else "served"))
    middle = r.strokes[1:forced if forced is not None else k]
    if middle:
        parts.append(_middle(middle, "after" if r.ending else "then"))
    if r.ending:
        end = _ending(r.ending, r.outcome, names)
        if forced is not None:
            prev = r.strokes[forced]
            end = f"{prev.who} hit {_a(_shot(prev))}, and {end}"
        parts.append(end)
    body = parts[0] + ("; " + ", ".join(parts[1:]) if len(parts) > 1 else "")
    text = f"{head}: {body[0].upper()}{body[1:]}."
    if r.winner:
        text += f" Point {names[r.winner]}" + (f", {_score_text(r.score_after)}." if r.score_after else ".")
    return text


def rally_dict(r: RallyFacts, names: dict[str, str]) -> dict:
    """A rally's facts and summary as JSON values."""
    e = r.ending
    return {"set": r.set_no, "rally": r.rally, "strokes": len(r.strokes),
            "score_before": list(r.score_before) if r.score_before else None,
            "score_after": list(r.score_after) if r.score_after else None,
            "server": r.strokes[0].player, "winner": r.winner, "winner_name": names[r.winner] if r.winner else None,
            "ending": None if e is None else {
                "stroke_number": e.ball_round, "player": e.player, "hitter": e.who, "stroke": e.stroke,
                "zone": ZONE_PHRASES.get(e.zone), "kind": r.outcome.kind, "reason": r.outcome.reason,
                "out": r.outcome.out},
            "sources": dict(Counter(s.source for s in r.strokes)), "start_s": r.start_s, "end_s": r.end_s,
            "summary": r.summary}


# ---------------------------------------------------------------- the match report


def _tally(rallies: list[RallyFacts], names: dict[str, str]) -> dict:
    """Points, winners and errors by stroke type, serves and their returns, longest rallies and the
    zones of the ending strokes, of some rallies (a set or the match)."""
    points = {k: dict.fromkeys(POINT_KEYS, 0) for k in names}
    ending = {k: {} for k in names}
    zones = {k: {WINNER: Counter(), ERROR: Counter()} for k in names}
    serves: dict[str, dict] = {k: {} for k in names}
    for r in rallies:
        if r.winner:
            loser = "B" if r.winner == "A" else "A"
            points[r.winner]["won"] += 1
            points[loser]["lost"] += 1
            e = r.ending
            if r.outcome.kind and e and e.player:
                won = r.outcome.kind == WINNER
                points[r.winner]["won_by_winners" if won else "won_by_opponent_errors"] += 1
                points[loser]["lost_by_opponent_winners" if won else "lost_by_errors"] += 1
                by_type = ending[e.player].setdefault(e.stroke or "unknown type", Counter())
                by_type[r.outcome.kind + "s"] += 1
                if e.zone in ZONE_PHRASES:
                    zones[e.player][r.outcome.kind][ZONE_PHRASES[e.zone]] += 1
        first = r.strokes[0]
        if first.player:
            kind = serves[first.player].setdefault(first.stroke or "unknown type",
                                                   {"count": 0, "won": 0, "returns": Counter()})
            kind["count"] += 1
            kind["won"] += r.winner == first.player
            if len(r.strokes) > 1:
                kind["returns"][r.strokes[1].stroke or "unknown type"] += 1
    longest = sorted(rallies, key=lambda r: -len(r.strokes))[:LONGEST]
    scored = [r for r in rallies if r.score_after]
    return {
        "rallies": len(rallies), "last_score": list(scored[-1].score_after) if scored else None,
        "points": points,
        "ending_strokes": {k: {t: dict(c) for t, c in sorted(v.items())} for k, v in ending.items()},
        "serves": {k: {t: {**v, "returns": dict(v["returns"].most_common())} for t, v in sorted(s.items())}
                   for k, s in serves.items()},
        "longest": [{"set": r.set_no, "rally": r.rally, "strokes": len(r.strokes), "winner": r.winner}
                    for r in longest],
        "zones": {k: {kind + "s": dict(c.most_common()) for kind, c in v.items()} for k, v in zones.items()},
    }


def _source(rallies: list[RallyFacts]) -> dict:
    strokes = [s for r in rallies for s in r.strokes]
    by = Counter(s.source for s in strokes)
    detected = sum(s.detected for s in strokes)
    told = [f"{SOURCE_WORDS[k]} ({n})" for k, n in by.most_common() if k != "none"]
    text = f"{len(strokes)} strokes" + (f", {detected} of them detected" if detected else ", annotated")
    if told:
        text += "; stroke types and zones from " + ", ".join(told)
    if by["none"]:
        text += f"; {by['none']} without a caption (type unknown)"
    return {"strokes": len(strokes), "detected": detected, "by_caption_source": dict(by), "text": text}


def match_report(m: MatchFacts) -> dict:
    """The match report as JSON values: the match, where its strokes came from, the tallies of the
    whole match and of each set, and every rally's summary."""
    sets = sorted({r.set_no for r in m.rallies})
    per_set = [{"scope": f"set {s}", "set": s, **_tally([r for r in m.rallies if r.set_no == s], m.names)}
               for s in sets]
    whole = {"scope": "match", "set": None, **_tally(m.rallies, m.names),
             "last_score": None, "set_scores": [[s["set"], *s["last_score"]] for s in per_set if s["last_score"]]}
    scopes = [whole, *per_set]
    return {"match": {"id": m.id, "name": m.name, "players": dict(m.names)}, "source": _source(m.rallies),
            "scopes": scopes, "rallies": [rally_dict(r, m.names) for r in m.rallies]}


def score_figure(report: dict) -> go.Figure:
    """Each player's score after each rally, one panel per set; a point's customdata is (set, rally)."""
    sets = [s["set"] for s in report["scopes"] if s["set"] is not None]
    names = report["match"]["players"]
    fig = make_subplots(rows=1, cols=max(len(sets), 1), subplot_titles=[f"Set {s}" for s in sets] or None,
                        shared_yaxes=True)
    colours = {"A": "#2563eb", "B": "#dc2626"}
    for col, s in enumerate(sets, start=1):
        rallies = [r for r in report["rallies"] if r["set"] == s and r["score_after"]]
        for k, player in enumerate("AB"):
            fig.add_trace(go.Scatter(
                x=list(range(1, len(rallies) + 1)), y=[r["score_after"][k] for r in rallies],
                customdata=[[r["set"], r["rally"]] for r in rallies], mode="lines+markers",
                name=names[player], legendgroup=player, showlegend=col == 1, line={"color": colours[player]},
                hovertemplate=f"{names[player]}: %{{y}}<br>set %{{customdata[0]}}, rally %{{customdata[1]}}"
                              "<extra></extra>"), row=1, col=col)
        # whole rallies only: a tick every rally on a short set, every 5 on a long one
        fig.update_xaxes(title_text="rallies", row=1, col=col, tick0=1, dtick=1 if len(rallies) <= 12 else 5)
    fig.update_yaxes(title_text="score", row=1, col=1)
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, clickmode="event")
    return fig


# ---------------------------------------------------------------- formats


def _counts(c: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) or "none"


def _scope_md(s: dict, names: dict[str, str]) -> list[str]:
    title = "Whole match" if s["set"] is None else f"Set {s['set']}"
    if s["set"] is None:
        score = "; after the last rally of each set: " + ", ".join(f"set {n} {a}-{b}" for n, a, b in s["set_scores"])
        score = score if s["set_scores"] else ""
    else:
        score = f", score after the last one {s['last_score'][0]}-{s['last_score'][1]}" if s["last_score"] else ""
    out = [f"## {title}", "", f"{s['rallies']} rallies{score}.", "", "**Points**", ""]
    out += [f"- {names[k]}: won {p['won']} ({p['won_by_winners']} with winners, {p['won_by_opponent_errors']} by "
            f"the opponent's errors), lost {p['lost']} ({p['lost_by_errors']} by errors, "
            f"{p['lost_by_opponent_winners']} to the opponent's winners)" for k, p in s["points"].items()]
    out += ["", "**Winners and errors by stroke type** (the stroke that ended the point)", "",
            "| player | stroke | winners | errors |", "|---|---|---|---|"]
    rows = [f"| {names[k]} | {t} | {c.get('winners', 0)} | {c.get('errors', 0)} |"
            for k, v in s["ending_strokes"].items() for t, c in v.items()]
    out += rows or ["| | none annotated | | |"]
    out += ["", "**Serves and returns**", ""]
    for k, v in s["serves"].items():
        for t, sv in v.items():
            out.append(f"- {names[k]}: {sv['count']} × {t}, {sv['won']} point{'' if sv['won'] == 1 else 's'} won; "
                       f"returns: {_counts(sv['returns'])}")
    out += ["", "**Longest rallies**", ""]
    out += [f"- set {r['set']}, rally {r['rally']}: {r['strokes']} strokes"
            + (f", point {names[r['winner']]}" if r["winner"] else "") for r in s["longest"]]
    out += ["", "**Where points ended** (hit zone of the ending stroke)", ""]
    out += [f"- {names[k]}: winners: {_counts(v['winners'])}; errors: {_counts(v['errors'])}"
            for k, v in s["zones"].items()]
    return out + [""]


def rallies_md(rallies: Iterable[dict]) -> str:
    return "\n".join(f"- Set {r['set']}: {r['summary']}" for r in rallies) + "\n"


def to_markdown(report: dict) -> str:
    m, names = report["match"], report["match"]["players"]
    out = [f"# {m['name'].replace('_', ' ')}", "", f"{names['A']} vs {names['B']}. Scores are {names['A']} first. "
           f"Source: {report['source']['text']}. Left and right are as the camera sees the court.", ""]
    for s in report["scopes"]:
        out += _scope_md(s, names)
    out += ["## Rallies", ""]
    return "\n".join(out) + "\n" + rallies_md(report["rallies"])


def to_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=1)


def to_html(report: dict) -> str:
    """A self-contained page: the report's Markdown as preformatted sections and the score chart
    with plotly.js inlined (no network)."""
    body = "".join(f"<section><pre>{html.escape(part)}</pre></section>"
                   for part in to_markdown(report).split("\n## "))
    plot = score_figure(report).to_html(full_html=False, include_plotlyjs=True)
    title = html.escape(report["match"]["name"].replace("_", " "))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto} pre{white-space:pre-wrap}</style>"
            f"</head><body>{plot}{body}</body></html>")


def render(report: dict, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format is one of {', '.join(FORMATS)}, not {fmt!r}")
    return {"md": to_markdown, "json": to_json, "html": to_html}[fmt](report)


def pick_rallies(report: dict, rally: int, set_no: int | None = None) -> list[dict]:
    """The rally dicts numbered `rally` (in set `set_no`, else in every set); ReportError when none."""
    found = [r for r in report["rallies"] if r["rally"] == rally and set_no in (None, r["set"])]
    if not found:
        where = f" of set {set_no}" if set_no is not None else ""
        have = sorted({r["rally"] for r in report["rallies"] if set_no in (None, r["set"])})
        listing = (", ".join(map(str, have)) if len(have) <= 20 else f"{have[0]}..{have[-1]} ({len(have)} in all)"
                   ) if have else "none"
        raise ReportError(f"no rally {rally}{where} in match {report['match']['id']}; its rallies are {listing}")
    return found


def render_rallies(rallies: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rallies, ensure_ascii=False, indent=1)
    if fmt == "html":
        items = "".join(f"<li>Set {r['set']}: {html.escape(r['summary'])}</li>" for r in rallies)
        return f"<!doctype html><html><head><meta charset='utf-8'></head><body><ul>{items}</ul></body></html>"
    return rallies_md(rallies)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.report",
                                description="Summarise a match from the stroke index: a sentence per rally, "
                                            "the match report and the score chart (html).")
    p.add_argument("--db", required=True, help="the stroke index (e.g. workspace/index.sqlite)")
    p.add_argument("--match", help="match id or name (default: the index's only match)")
    p.add_argument("--set", type=int, dest="set_no", help="with --rally: the set of the rally")
    p.add_argument("--rally", type=int, help="summarise this rally only")
    p.add_argument("--format", choices=FORMATS, default="md")
    p.add_argument("--out", help="write here instead of printing")
    p.add_argument("--rewrite", metavar="MODEL",
                   help="rewrite each rally's summary with this model (an adapter folder, a base folder or a "
                        "Hugging Face id); a rewrite that changes a number or a name is dropped")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.db).is_file():  # StrokeStore would create an empty index
        print(f"error: no index at {args.db}", file=sys.stderr)
        return 2
    try:
        store = StrokeStore(args.db)
        report = match_report(load_match(store, args.match))
        store.close()
        if args.rewrite:
            from core.loader import ModelLoadError, load_any  # torch and transformers: only when asked
            from core.rewrite import rewrite_rallies

            try:
                report = rewrite_rallies(report, load_any(args.rewrite).write)
            except ModelLoadError as err:
                raise ReportError(f"--rewrite: {err}") from None
            print(f"{report['rewritten']} of {len(report['rallies'])} summaries rewritten; the others keep the "
                  "table's words (their rewrite changed a fact)", file=sys.stderr)
        text = (render_rallies(pick_rallies(report, args.rally, args.set_no), args.format)
                if args.rally is not None else render(report, args.format))
    except (ReportError, IndexStoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
