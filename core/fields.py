"""A question in plain words -> the stroke fields it asks about.

Fields: side (upper/bottom), player (a name from the annotations), stroke class, zone, set,
rally, stroke number in the rally (ball_round), the score before the rally, the landing zone, the
point's outcome, the hand (forehand, backhand, around the head) and the hit height. Values of one
field are alternatives ("smashes or clears"), except outcomes, which must all hold ("errors into
the net"); different fields must all hold.

Zones: a coach's zone words cover families of cells (core.vocab.ZONE_FAMILIES): "backcourt",
"deep", "the back", "in the backcourt" mean the left, centre and right back cells (zones 4, 9,
3); "the net", "front court", "at the net" the three front cells (2, 7, 1); "left side" /
"right side" the left (2, 4) or right (1, 3) cells; "right backcourt", "left side of the net",
"middle" one cell each. Left and right are as the camera sees the court. A zone phrase after
"into", "to", "towards", "onto" or "land(s/ing) in" is where the shuttle lands (the landing point
of the stroke, in the receiver's half); otherwise ("from", "in", "at") where it is hit.

Outcomes (core.outcome, on a rally's last stroke): "winner(s)", "won the point" (the hitter won
the point), "error(s)", "unforced errors", "lost the point" (the hitter lost it; ShuttleSet has no
forced/unforced label, so every error counts), "into the net" / "in the net" / "hit the net"
(errors whose shuttle hit the net or did not get over it), "out", "long", "wide" (out errors, by
the landing point past the baseline or the singles sideline), "rally-ending", "last shot of the
rally" (every rally's last stroke).

Sequences and exclusions split the question: "X's replies to Y's drops" (after "after", "reply
to", "following": the previous stroke of the same rally; before "followed by", "then": the same),
"X's strokes except lobs" / "not clears" (stroke classes left out), "rallies of more than 20
shots" / "long rallies" (the strokes of rallies that long; the length words are in
synonyms.toml), "rallies won by X" / "points lost by the bottom player" (the strokes of the
rallies X, or the player at that end, won or lost, by the annotated point winner); each part is
parsed as a question of its own. `asks_for_rallies` tells when the answer is those rallies
rather than strokes. "game point": a rally where one player is one point from the game (20+ and ahead, or 29);
"match point": a game point of a player who has already won a game of the match. "first
attacking shot": the first smash or rush (net kill) of each rally, whoever hit it.

Parsing is deterministic first: the question is lower-cased and tokenised, plurals and verb
forms are folded onto known words, and the longest phrase of `lexicon()` (the vocabularies of
core.vocab plus the synonyms of `synonyms.toml`) wins at every position. Words left over are either question
scaffolding (`GENERIC`, "when does the ... hit") or content the fields do not cover. Content
left over is then compared with the vocabulary phrases by the sentence-embedding model; a span
that is at least `EMBED_THRESHOLD` similar to one phrase takes its field value. Whatever is still
left over makes the question "not covered by the fields" (the semantic path then has a say).
Before any of this, an unknown word close to a player's name word or a vocabulary word
(`SPELLING_CUTOFF`, same first letter) is read as it and reported in `Parse.corrected`; a common
English word (`english_words`) is only read as a name.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.vocab import SIDE_FAMILIES, STROKE_LABELS, STROKES, ZONE_FAMILIES, ZONE_PHRASES

EMBED_THRESHOLD = 0.85
SPELLING_CUTOFF = 0.8  # difflib's ratio for reading an unknown word as a known one
MAX_QUESTION_CHARS = 300
MAX_QUESTION_WORDS = 60
SERVES = ("short serve", "long serve")
BACK, FRONT = ZONE_FAMILIES[9], ZONE_FAMILIES[7]

SYNONYM_FILE = Path(__file__).with_name("synonyms.toml")
ZONE_FAMILY_NAMES = {"backcourt": BACK, "front court": FRONT, "left side": SIDE_FAMILIES["left"],
                     "right side": SIDE_FAMILIES["right"]}


def load_synonyms(path: Path = SYNONYM_FILE) -> tuple[dict[str, tuple[str, object]], dict[str, tuple[str, int]]]:
    """The synonym tables of the data file: (phrase -> (field, value or tuple of values), rally-length
    phrase -> (comparison, strokes)). Zone families are named there ("backcourt"), cells are numbers."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    lengths = {k: (op, int(n)) for k, (op, n) in data.pop("rally_length", {}).items()}
    table: dict[str, tuple[str, object]] = {}
    for fld, phrases in data.items():
        if fld not in _FIELD_OF:
            raise ValueError(f"{path.name}: unknown field [{fld}]")
        for phrase, val in phrases.items():
            if fld == "zone" and isinstance(val, str):
                val = ZONE_FAMILY_NAMES[val]
            table[phrase] = (fld, tuple(val) if isinstance(val, list) else val)
    return table, lengths


# Question scaffolding: words that ask, not restrict.
GENERIC = set("""
a an the this that these those it its is are was were be been being do does did doing done when where what
which who whom whose how many much time times moment moments point points in on at of to into onto from by
for with during there any all every each some show me list find give get see identify locate tell us
perform performs performed performing execute executes executed executing hit hits hitting play plays
played playing occur occurs occurred occurring happen happens happened happening take takes taken took
place places make makes made go goes went and or stroke strokes shot shots ball balls clip clips video
match player players he she his her him they their them lands land landing landed rally rallies
court please can could would you i we my our use uses used try tries attempt attempts go goes where's when's
more most fewer less common frequent often favourite favorite usual number count total than
""".split())

FUNCTION_WORDS = {"the", "a", "an", "at", "in", "to", "of", "by", "on", "into", "from", "for", "with"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
                "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "opening": 1}
ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
SCORE = re.compile(r"^(\d{1,2})-(\d{1,2}|all)$")
TOKEN = re.compile(r"\d{1,2}-(?:\d{1,2}|all)\b|[a-z0-9]+(?:-[a-z0-9]+)*")
COUNTERS = {"set": "set", "game": "set", "rally": "rally", "stroke": "round", "shot": "round"}


@dataclass(frozen=True)
class Fields:
    """What a question restricts; empty sets mean 'any'."""

    sides: frozenset = frozenset()
    players: frozenset = frozenset()  # player names as the annotations spell them
    strokes: frozenset = frozenset()
    zones: frozenset = frozenset()
    sets: frozenset = frozenset()
    rallies: frozenset = frozenset()
    rounds: frozenset = frozenset()  # ball_round, 1-based stroke number in the rally
    scores: frozenset = frozenset()  # (a, b) before the rally, either order; "deuce"
    landing_zones: frozenset = frozenset()  # zone of the landing point
    outcomes: frozenset = frozenset()  # OUTCOME_TAGS, all must hold
    hands: frozenset = frozenset()  # 'forehand' | 'backhand' | 'aroundhead'
    heights: frozenset = frozenset()  # 'above' | 'below' the net top
    places: frozenset = frozenset()  # 'first attack': the rally's first smash or rush
    not_strokes: frozenset = frozenset()  # "except lobs", "not clears"
    rally_length: tuple | None = None  # (">" | ">=" | "<" | "<=", n): strokes in the stroke's rally
    won_by: frozenset = frozenset()  # who won the stroke's rally: player names, or 'upper' / 'bottom' (the end)
    lost_by: frozenset = frozenset()  # who lost it
    after: "Fields | None" = None  # what the previous stroke of the rally must be ("after a smash")

    def empty(self) -> bool:
        return not (any(getattr(self, f) for f in FIELD_NAMES) or self.not_strokes or self.rally_length
                    or self.won_by or self.lost_by or self.after is not None)

    def as_dict(self) -> dict:
        out = {f: sorted(getattr(self, f), key=str) for f in FIELD_NAMES if getattr(self, f)}
        if self.not_strokes:
            out["not_strokes"] = sorted(self.not_strokes)
        if self.rally_length:
            out["rally_length"] = list(self.rally_length)
        for name in ("won_by", "lost_by"):
            if getattr(self, name):
                out[name] = sorted(getattr(self, name))
        if self.after is not None:
            out["after"] = self.after.as_dict()
        return out


FIELD_NAMES = ("sides", "players", "strokes", "zones", "sets", "rallies", "rounds", "scores", "landing_zones",
               "outcomes", "hands", "heights", "places")
_FIELD_OF = {"side": "sides", "player": "players", "stroke": "strokes", "zone": "zones", "set": "sets",
             "rally": "rallies", "round": "rounds", "score": "scores", "landing": "landing_zones",
             "outcome": "outcomes", "hand": "hands", "height": "heights", "place": "places"}
SYNONYMS, RALLY_LENGTHS = load_synonyms()
ATTACKING = ("smash", "rush")  # the stroke classes a rally's "first attacking shot" is one of
OUTCOME_TAGS = ("winner", "error", "net", "out", "long", "wide", "last")
LANDING_WORDS = {"into", "to", "towards", "toward", "onto"}
# The question split at a sequence or negation word: (pattern, which side is the previous stroke / excluded)
AFTER = re.compile(r"\b(?:after|following|in reply to|in response to|repl(?:y|ies) to|answers? to|responses? to)\b")
THEN = re.compile(r"\b(?:followed by|and then|then)\b")
EXCEPT = re.compile(r"\b(?:except(?: for)?|excluding|other than|but not|apart from|not)\b")
RALLY_LENGTH = re.compile(r"\b(more than|over|longer than|at least|fewer than|less than|under|shorter than|"
                          r"at most)\s+(\d{1,3})\s+(?:shots|strokes|hits|shot|stroke)\b")
WON_BY = re.compile(r"\b(?:(?:rallies|rally|points?|games?)\s+(?:of\s+)?)?(won|lost)\s+by\b")
LENGTH_PHRASE = re.compile(r"\b(" + "|".join(re.escape(k.removesuffix(" rally")) for k in RALLY_LENGTHS)
                           + r") rall(?:y|ies)\b")
LENGTH_OPS = {"more than": ">", "over": ">", "longer than": ">", "at least": ">=", "fewer than": "<",
              "less than": "<", "under": "<", "shorter than": "<", "at most": "<="}


@dataclass
class Parse:
    fields: Fields
    leftover: list[str]  # content words the fields do not cover
    matched: list[tuple[str, str, object]] = field(default_factory=list)  # (words, field, value)
    message: str | None = None  # why the question cannot be answered at all
    corrected: list[tuple[str, str]] = field(default_factory=list)  # (typed word, what it was read as)
    vector: np.ndarray | None = None  # the question's embedding, when parse() was asked for it

    @property
    def covered(self) -> bool:
        """Every content word maps to a field, and at least one field is set."""
        return not self.leftover and not self.fields.empty() and self.message is None


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"'s\b", "", text)
    text = re.sub(r"\bcross\s*-?\s*court\b", "cross-court", text)
    text = re.sub(r"\bback\s*-?\s*court\b", "backcourt", text)
    return text


def lexicon(reference: bool = False) -> dict[tuple[str, ...], tuple[str, object]]:
    """Every phrase the parser knows (as token tuples) -> (field, value). `reference`: zone words
    name one cell each, as in the reference system's questions (the backcourt and the net families
    are their centre cells, 9 and 7)."""
    table: dict[str, tuple[str, object]] = {}
    for side in ("upper", "bottom"):
        table[f"{side} player"] = ("side", side)
    for lab in STROKE_LABELS:
        for name in (lab.stroke, lab.shuttleset_en, lab.reference_en):
            if name:
                table.setdefault(normalise(name), ("stroke", lab.stroke))
    for zone, phrase in ZONE_PHRASES.items():
        cells = zone if reference else ZONE_FAMILIES.get(zone, zone)
        table[phrase] = ("zone", cells)
        table[re.sub(r"^(at|in) ", "", phrase)] = ("zone", cells)
    centre = {v: k for k, v in ZONE_FAMILIES.items()}
    for k, (fld, val) in SYNONYMS.items():
        if not (reference and fld == "zone" and val in centre and k in table):
            table[normalise(k)] = (fld, centre.get(val, val) if reference and fld == "zone" else val)
    return {tuple(TOKEN.findall(k)): v for k, v in table.items()}


LEXICON = lexicon()
REFERENCE_LEXICON = lexicon(reference=True)
# the phrases a leftover span is compared with by embedding, and their texts
EMBEDDED_PHRASES = [(k, v) for k, v in LEXICON.items() if v[0] in ("stroke", "zone", "side")]
PHRASE_TEXTS = [" ".join(k) for k, _ in EMBEDDED_PHRASES]
MAX_PHRASE = max(len(k) for k in LEXICON)
KNOWN_WORDS = {w for k in LEXICON for w in k} | GENERIC | set(COUNTERS)
PHRASE_WORDS = {k[0] for k in LEXICON if len(k) == 1}  # one-word phrases are never folded ("netted")


def fold(token: str, known: set[str]) -> str:
    """Plural and verb forms onto a known word: smashes -> smash, lobbed -> lob, rallies -> rally."""
    if token in known and (len(token) <= 3 or token in PHRASE_WORDS or not token.endswith(("s", "ed", "ing"))):
        return token
    candidates = []
    if token.endswith("ies"):
        candidates.append(token[:-3] + "y")
    if token.endswith("es"):
        candidates.append(token[:-2])
    if token.endswith("s"):
        candidates.append(token[:-1])
    if token.endswith("ing"):
        candidates += [token[:-3], token[:-3] + "e", token[:-4]]
    if token.endswith("ed"):
        candidates += [token[:-2], token[:-1], token[:-3]]
    return next((c for c in candidates if c in known and len(c) >= 3), token)


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Common English words (the bundled sentence model's word-piece vocabulary): a question's
    unknown word that is one of them is a word, not a misspelling of a stroke or zone word."""
    try:
        from core.embed import bundled_model_path

        lines = (bundled_model_path() / "vocab.txt").read_text(encoding="utf-8").split()
    except (OSError, RuntimeError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and w.islower() and len(w) >= 4)


def name_keys(name: str) -> dict[tuple[str, ...], int]:
    """Ways a question may name a player -> rank (0 best): the full name (0), the surname (the upper-case
    part, as ShuttleSet writes it) alone or with the given names in either order (1), and any other
    single name word that is not a vocabulary word (2)."""
    raw = name.replace(".", " ").split()
    tokens = [tuple(TOKEN.findall(normalise(t))) for t in raw]
    flat = tuple(w for t in tokens for w in t)
    keys: dict[tuple[str, ...], int] = {}
    is_surname = [r.isupper() and len(r) > 1 for r in raw]
    surname = tuple(w for t, up in zip(tokens, is_surname) if up for w in t)
    given = tuple(w for t, up in zip(tokens, is_surname) if not up for w in t)
    for w in flat:
        if len(w) >= 3 and w not in KNOWN_WORDS and w not in NUMBER_WORDS:
            keys[(w,)] = 2
    if surname:
        for key in (surname, given + surname, surname + given):
            keys[key] = 1
    if flat:
        keys[flat] = 0
    return {k: v for k, v in keys.items() if k}


STROKE_LEVEL = ("sides", "players", "strokes", "zones", "landing_zones", "outcomes", "hands", "heights", "places",
               "rounds", "not_strokes")
RALLY_WORDS = re.compile(r"\b(?:rall(?:y|ies)|points?)\b")
STROKE_WORDS = re.compile(r"\b(?:strokes?|shots?|hits?)\b")


def asks_for_rallies(question: str, fields: Fields) -> bool:
    """Whether a question's answer is rallies, not strokes: it names rallies or points ("rallies of
    more than 20 shots", "rallies won by X", "game points", "rally 14") and no stroke field."""
    if any(getattr(fields, f) for f in STROKE_LEVEL) or fields.after is not None:
        return False
    text = RALLY_LENGTH.sub(" ", normalise(question))
    return bool(RALLY_WORDS.search(text)) and not STROKE_WORDS.search(text)


OUTCOME_WORDS = {"net": "into the net", "out": "hit out", "long": "that went long", "wide": "that went wide"}
FAMILY_WORDS = {frozenset(BACK): "the backcourt", frozenset(FRONT): "the front court",
                frozenset(SIDE_FAMILIES["left"]): "the left side", frozenset(SIDE_FAMILIES["right"]): "the right side"}


def _zones(cells) -> str:
    cells = frozenset(int(c) for c in cells)
    if cells in FAMILY_WORDS:
        return FAMILY_WORDS[cells]
    return " or ".join(re.sub(r"^(at|in) ", "", ZONE_PHRASES.get(c, f"zone {c}")) for c in sorted(cells))


def _plural(stroke: str) -> str:
    return stroke + ("es" if stroke.endswith(("sh", "ch")) else "s")


def describe(fields: dict) -> str:
    """What a question's fields (Fields.as_dict) ask for, in a coach's words: "smashes by the
    bottom player hit from the backcourt, in set 2"."""
    strokes = " or ".join(_plural(s) for s in fields.get("strokes", []))
    outcomes = set(fields.get("outcomes", []))
    if "winner" in outcomes:
        words = f"{strokes} that won the point" if strokes else "winners"
    elif "error" in outcomes and outcomes & {"net", "out", "long", "wide"}:
        words = strokes or "errors"  # the detail below says how the point was lost
    elif "error" in outcomes:
        words = f"{strokes} that lost the point" if strokes else "errors"
    else:
        words = strokes or "strokes"
    if "last" in outcomes:
        words = "rally-ending " + words
    detail = [d for d in ("long", "wide") if d in outcomes] or (["out"] if "out" in outcomes else [])
    words += "".join(f" {OUTCOME_WORDS[d]}" for d in ["net"] * ("net" in outcomes) + detail)
    hands = [{"aroundhead": "around-the-head"}.get(h, h) for h in fields.get("hands", [])]
    if hands:
        words = " or ".join(hands) + " " + words
    parts = [words.strip()]
    if fields.get("not_strokes"):
        parts.append("except " + " and ".join(_plural(s) for s in fields["not_strokes"]))
    who = list(fields.get("players", [])) + [f"the {s} player" for s in fields.get("sides", [])]
    if who:
        parts.append("by " + " or ".join(who))
    if fields.get("zones"):
        parts.append("hit from " + _zones(fields["zones"]))
    if fields.get("landing_zones"):
        parts.append("landing in " + _zones(fields["landing_zones"]))
    if fields.get("heights"):
        parts.append(" or ".join(f"{h} the net" for h in fields["heights"]))
    if fields.get("places"):
        parts.append("as the rally's first attacking shot")
    if fields.get("rounds"):
        rounds = list(fields["rounds"])
        parts.append({(1,): "as the serve", (2,): "as the return of serve"}.get(
            tuple(rounds), "as stroke " + " or ".join(map(str, rounds)) + " of the rally"))
    if fields.get("after"):
        parts.append("after " + describe(fields["after"]))
    where = []
    if fields.get("sets"):
        where.append("set " + " or ".join(map(str, fields["sets"])))
    if fields.get("rallies"):
        where.append("rally " + " or ".join(map(str, fields["rallies"])))
    if fields.get("rally_length"):
        op, n = fields["rally_length"]
        where.append(f"rallies of {dict(LENGTH_WORDS)[op]} {n} shots")
    for key, verb in (("won_by", "won"), ("lost_by", "lost")):
        if fields.get(key):
            names = [f"the {w} player" if w in SIDES_WORDS else w for w in fields[key]]
            where.append(f"rallies {verb} by " + " or ".join(names))
    if where:
        parts.append("in " + ", ".join(where))
    if fields.get("scores"):
        parts.append("at " + " or ".join(s if isinstance(s, str) else "-".join(map(str, s)) for s in fields["scores"]))
    return " ".join(parts)


LENGTH_WORDS = ((">", "more than"), (">=", "at least"), ("<", "fewer than"), ("<=", "at most"))
SIDES_WORDS = ("upper", "bottom")


def _joined(main: Parse, fields: Fields, *others: Parse) -> Parse:
    """One Parse of a split question: the combined fields, every part's leftover and matches."""
    leftover = main.leftover + [w for o in others for w in o.leftover]
    matched = main.matched + [x for o in others for x in o.matched]
    message = main.message or next((o.message for o in others if o.message), None)
    corrected = main.corrected + [c for o in others for c in o.corrected]
    return Parse(fields, leftover, matched, message, corrected)


def _lands(tokens: list[str], i: int) -> bool:
    """Whether a zone phrase starting at token i says where the shuttle lands: "into / to / onto
    (the) ...", "lands (in the) ..."."""
    j = i - 1
    while j >= 0 and tokens[j] in ("the", "a"):
        j -= 1
    return j >= 0 and (tokens[j] in LANDING_WORDS or "land" in tokens[max(0, j - 1): j + 1])


class FieldParser:
    """Questions -> Fields, for the players of an index (names from the annotations)."""

    def __init__(self, player_names: Iterable[str] = (), embedder=None, phrase_vectors: np.ndarray | None = None):
        """`phrase_vectors`: the embedder's vectors of `PHRASE_TEXTS` (the engine reads them from the
        store, which keeps them across processes); None: embedded on first use."""
        self.embedder = embedder
        ranked: dict[tuple[str, ...], dict[str, int]] = {}
        for name in player_names:
            if name:
                for key, rank in name_keys(name).items():
                    ranked.setdefault(key, {})[name] = rank
        # A word that is one player's surname and another's given name ("Chen") names the first.
        self.players = {k: {n for n, r in v.items() if r == min(v.values())} for k, v in ranked.items()}
        self.known = KNOWN_WORDS | {w for k in self.players for w in k}
        # words a misspelling may be read as: player name words and the vocabulary's content words
        self._spellings = sorted(w for w in self.known - GENERIC - FUNCTION_WORDS if len(w) >= 4 and w.isalpha())
        self._name_words = sorted(k[0] for k in self.players if len(k) == 1 and len(k[0]) >= 4)
        self._phrase_vecs = phrase_vectors

    # ------------------------------------------------------------ deterministic part

    def parse(self, question: str, reference: bool = False, vector: bool = False) -> Parse:
        """`reference`: the reference system's phrasing, where every zone phrase names the hit cell
        its captions use ("lands in the backcourt" asks for zone 9): the stage-2 questions.
        `vector`: also embed the question (`Parse.vector`), with its leftover spans in one pass."""
        text = (question or "").strip()
        if not text:
            return Parse(Fields(), [], message="The question is empty: ask about a player, a stroke type, a zone, "
                                               "a set or a rally, e.g. 'when does the bottom player smash?'")
        if len(text) > MAX_QUESTION_CHARS or len(text.split()) > MAX_QUESTION_WORDS:
            return Parse(Fields(), [], message=f"The question is too long ({len(text)} characters); keep it under "
                                               f"{MAX_QUESTION_CHARS} characters and {MAX_QUESTION_WORDS} words.")
        enc = _Encoding(self.embedder, question if vector and self.embedder is not None else None)
        out = self._split(normalise(text), reference, enc) or self._parse_part(text, reference, enc)
        out.vector = enc.question_vector()
        return out

    def _split(self, text: str, reference: bool, enc: "_Encoding") -> Parse | None:
        """Sequences ("after a smash", "X's replies to Y's drops", "a smash followed by a net kill"),
        exclusions ("except lobs", "not clears") and rally lengths ("rallies of more than 20 shots"):
        each part parsed on its own, then joined; None when the question has none of them."""
        m = RALLY_LENGTH.search(text)
        if m:
            rest = self._parse_rest(text[: m.start()] + " " + text[m.end():], reference, enc)
            return _joined(rest, replace(rest.fields, rally_length=(LENGTH_OPS[m.group(1)], int(m.group(2)))))
        m = LENGTH_PHRASE.search(text)
        if m:
            rest = self._parse_rest(text[: m.start()] + " rallies " + text[m.end():], reference, enc)
            length = RALLY_LENGTHS[f"{m.group(1)} rally"]
            return _joined(rest, replace(rest.fields, rally_length=length))
        m = WON_BY.search(text)
        if m:
            rest = self._parse_or_empty(text[: m.start()], reference, enc)
            who = self._parse_or_empty(text[m.end():], reference, enc)
            if not (who.fields.players or who.fields.sides):
                return None
            key = "won_by" if m.group(1) == "won" else "lost_by"
            return _joined(rest, replace(rest.fields, **{key: who.fields.players | who.fields.sides}),
                           Parse(Fields(), who.leftover, corrected=who.corrected))
        for pattern, previous_first in ((AFTER, False), (THEN, True)):
            m = pattern.search(text)
            if m:
                before, after = text[: m.start()], text[m.end():]
                cur, prev = (after, before) if previous_first else (before, after)
                cur_p, prev_p = self._parse_or_empty(cur, reference, enc), self._parse_or_empty(prev, reference, enc)
                if prev_p.fields.empty():
                    return None
                return _joined(cur_p, replace(cur_p.fields, after=prev_p.fields), prev_p)
        m = EXCEPT.search(text)
        if m:
            keep = self._parse_or_empty(text[: m.start()], reference, enc)
            drop = self._parse_or_empty(text[m.end():], reference, enc)
            if not drop.fields.strokes or any(getattr(drop.fields, f) for f in FIELD_NAMES if f != "strokes"):
                return None  # only stroke classes can be left out; "except" stays a word not understood
            return _joined(keep, replace(keep.fields, not_strokes=drop.fields.strokes), drop)
        return None

    def _parse_rest(self, text: str, reference: bool, enc: "_Encoding") -> Parse:
        """What is left of a question once its rally length is read: split again ("short rallies won by X")."""
        return self._split(text, reference, enc) or self._parse_or_empty(text, reference, enc)

    def _parse_or_empty(self, text: str, reference: bool, enc: "_Encoding") -> Parse:
        """A part of a question; a part with no words is no restriction ("not clears": every stroke)."""
        return self._parse_part(text, reference, enc) if TOKEN.findall(text) else Parse(Fields(), [])

    def _parse_part(self, text: str, reference: bool, enc: "_Encoding") -> Parse:
        tokens, corrected = self._spelled([fold(t, self.known) for t in TOKEN.findall(normalise(text))])
        values: dict[str, set] = {f: set() for f in FIELD_NAMES}
        matched: list[tuple[str, str, object]] = []
        used = [False] * len(tokens)
        self._numbers(tokens, used, values, matched)
        self._phrases_pass(tokens, used, values, matched, reference)
        leftover = [t for t, u in zip(tokens, used) if not u and t not in GENERIC]
        if leftover and self.embedder is not None:
            leftover = self._embedded(tokens, used, values, matched, enc)
        if not tokens:
            return Parse(Fields(), [], message="The question has no words: ask about a player, a stroke type, "
                                               "a zone, a set or a rally.")
        fields = Fields(**{f: frozenset(v) for f, v in values.items()})
        return Parse(fields, leftover, matched, corrected=corrected)

    def _spelled(self, tokens: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """Unknown words that are a close misspelling of a player's name word or a vocabulary word
        ("christy", "smahs") replaced by it, with (typed, read as) for each; read as names the player."""
        out, corrected = list(tokens), []
        for i, tok in enumerate(tokens):
            if len(tok) < 4 or tok in self.known or tok in GENERIC or not tok.isalpha():
                continue
            # an English word ("sort", "clean") is never read as a vocabulary word, only as a name
            pool = self._name_words if tok in english_words() else self._spellings
            forms = (tok, tok[:-1]) if tok.endswith("s") else (tok,)  # "cleers": "clear"
            close = [w for f in forms for w in difflib.get_close_matches(f, pool, n=3, cutoff=SPELLING_CUTOFF)
                     if w[0] == tok[0]]
            if close:
                out[i] = close[0]
                players = self.players.get((close[0],))
                corrected.append((tok, " / ".join(sorted(players)) if players else close[0]))
        return out, corrected

    def _numbers(self, tokens, used, values, matched) -> None:
        """'set 2', 'second game', 'rally 14', '3rd stroke', 'at 11-9', '20 all'."""
        def number(tok: str) -> int | None:
            if tok.isdigit():
                return int(tok)
            m = ORDINAL.match(tok)
            return int(m.group(1)) if m else NUMBER_WORDS.get(tok)

        for i, tok in enumerate(tokens):
            if used[i]:
                continue
            m = SCORE.match(tok)
            if m:
                a = int(m.group(1))
                b = a if m.group(2) == "all" else int(m.group(2))
                self._take(values, matched, used, [i], "score", (a, b), tok)
                continue
            if tok.isdigit() and i + 1 < len(tokens) and tokens[i + 1] == "all" and not used[i + 1]:
                self._take(values, matched, used, [i, i + 1], "score", (int(tok), int(tok)), f"{tok} all")
                continue
            counter = COUNTERS.get(tok)
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            prev = tokens[i - 1] if i > 0 else None
            if counter == "set" and prev in ("each", "every", "a"):  # "the first rally of each game": all sets
                used[i] = True
                continue
            if counter and nxt is not None and not used[i + 1] and number(nxt) is not None \
                    and (nxt.isdigit() or nxt in ("one", "two", "three", "four", "five")):
                self._take(values, matched, used, [i, i + 1], counter, number(nxt), f"{tok} {nxt}")
            elif counter and prev is not None and not used[i - 1] and number(prev) is not None and not prev.isdigit():
                self._take(values, matched, used, [i - 1, i], counter, number(prev), f"{prev} {tok}")

    def _phrases_pass(self, tokens, used, values, matched, reference: bool = False) -> None:
        """Known phrases, the most content words first (then the longest, then leftmost), never overlapping:
        'the net pops' is a lob ('net pop'), not the zone 'the net' followed by 'pops'."""
        found = []
        for i in range(len(tokens)):
            for n in range(1, min(MAX_PHRASE, len(tokens) - i) + 1):
                span = tuple(tokens[i:i + n])
                table = REFERENCE_LEXICON if reference else LEXICON
                if span in self.players:
                    pairs = [("player", p) for p in sorted(self.players[span])]
                elif span in table:
                    fld, val = table[span]
                    pairs = [(fld, v) for v in (val if isinstance(val, tuple) else (val,))]
                else:
                    continue
                content = sum(t not in FUNCTION_WORDS for t in span)
                found.append((-content, -n, i, n, pairs))
        for _, _, i, n, pairs in sorted(found, key=lambda x: x[:3]):
            if any(used[i:i + n]):
                continue
            landing = not reference and _lands(tokens, i)
            for fld, val in pairs:
                fld = "landing" if fld == "zone" and landing else fld
                self._take(values, matched, used, list(range(i, i + n)), fld, val, " ".join(tokens[i:i + n]))

    @staticmethod
    def _take(values, matched, used, idx, fld, val, words) -> None:
        values[_FIELD_OF[fld]].add(val)
        matched.append((words, fld, val))
        for j in idx:
            used[j] = True

    # ------------------------------------------------------------ embedding part

    def _vocabulary(self) -> np.ndarray:
        if self._phrase_vecs is None:
            self._phrase_vecs = self.embedder.encode(PHRASE_TEXTS)
        return self._phrase_vecs

    def _embedded(self, tokens, used, values, matched, enc: "_Encoding") -> list[str]:
        """Content spans left over -> the nearest vocabulary phrase, if near enough."""
        runs, run = [], []
        for i, (t, u) in enumerate(zip(tokens, used)):
            if not u and t not in GENERIC:
                run.append(i)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        spans = [r[s:e] for r in runs for s in range(len(r)) for e in range(s + 1, min(len(r), s + 3) + 1)]
        sims = enc.encode([" ".join(tokens[i] for i in s) for s in spans]) @ self._vocabulary().T
        for k in sorted(range(len(spans)), key=lambda k: (-len(spans[k]), -sims[k].max())):
            s = spans[k]
            if any(used[i] for i in s):
                continue
            best = int(sims[k].argmax())
            if sims[k, best] >= EMBED_THRESHOLD:
                fld, val = EMBEDDED_PHRASES[best][1]
                for v in (val if isinstance(val, tuple) else (val,)):
                    self._take(values, matched, used, s, fld, v, " ".join(tokens[i] for i in s))
        return [t for t, u in zip(tokens, used) if not u and t not in GENERIC]


class _Encoding:
    """One question's embedding work: its leftover spans and, when `question` is given, the question
    itself, in one forward pass of the model (a forward's fixed cost dominates at this size)."""

    def __init__(self, embedder, question: str | None):
        self.embedder, self.question, self.vector = embedder, question, None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.question is None or self.vector is not None:
            return self.embedder.encode(texts)
        vecs = self.embedder.encode([self.question, *texts])
        self.vector = vecs[0]
        return vecs[1:]

    def question_vector(self) -> np.ndarray | None:
        if self.question is not None and self.vector is None:
            self.vector = self.embedder.encode_one(self.question)
        return self.vector


def stroke_names() -> tuple[str, ...]:
    return STROKES
