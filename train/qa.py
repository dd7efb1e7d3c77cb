"""Stage-2 questions: templates, rally chunks, and the questions (with their target answers) of each chunk.

A rally's strokes (ordered by ball_round) are cut into chunks of 5 (10 for chain-of-thought).
Each chunk gets 14 questions as in the reference system: one negative per question kind, about
an event drawn from the vocabularies that no stroke of the chunk matches, and 10 positives about
the chunk's own strokes. A positive's answer lists every 0-based index of the chunk whose fields
match the question, not only the stroke it was drawn from.

An event is a dict with some of `side`, `stroke`, `zone` (the kinds below name which); a stroke
matches when its fields are equal. Strokes enter as anything with `.side`, `.stroke`, `.zone`
and `.caption` (core.annotations.Stroke).

The answer format itself (`format_answer`, `parse_answer`) is the model's and lives in core/prompts.py.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from core.prompts import format_answer, format_cot_answer
from core.vocab import SIDES, STROKES, ZONE_PHRASES

KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "player_stroke_area": ("side", "stroke", "zone"),
    "player_stroke": ("side", "stroke"),
    "stroke": ("stroke",),
    "area": ("zone",),
}
KINDS = tuple(KIND_FIELDS)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "player_stroke_area": (
        "When does the {player} hits a {stroke} {hit_area}?",
        "At what point in the rally does the {player} perform a {stroke} {hit_area}?",
        "Identify when the {player} executes a {stroke} {hit_area}.",
        "Locate the moment when a {stroke} {hit_area} is played by the {player}.",
    ),
    "player_stroke": (
        "When does the {player} hits a {stroke}?",
        "At what time does the {player} execute a {stroke}?",
        "When in this rally does the {player} perform a {stroke}?",
        "Identify the moment the {player} plays a {stroke}.",
    ),
    "stroke": (
        "When is a {stroke} hits?",
        "At what moment does a {stroke} occur?",
        "When during the rally does a {stroke} happen?",
        "Locate when the {stroke} takes place.",
    ),
    "area": (
        "Which stroke is hit {hit_area}?",
        "Which shot lands {hit_area}?",
        "Identify the stroke that occurs {hit_area}.",
        "What stroke happens {hit_area}?",
    ),
}

CHUNK = 5
COT_CHUNK = 10
NEGATIVES_PER_CHUNK = len(KINDS)
POSITIVES_PER_CHUNK = 10


# ---------------------------------------------------------------- events and answers


def event_of(stroke, kind: str) -> dict:
    """The fields of `stroke` that a question of `kind` asks about."""
    return {f: getattr(stroke, f) for f in KIND_FIELDS[kind]}


def matching_indices(strokes: Sequence, event: dict) -> list[int]:
    """0-based indices of every stroke whose fields equal the event's."""
    return [i for i, s in enumerate(strokes) if all(getattr(s, f) == v for f, v in event.items())]


def fill_template(template: str, event: dict) -> str:
    values = {"player": f"{event['side']} player" if "side" in event else "",
              "stroke": event.get("stroke", ""),
              "hit_area": ZONE_PHRASES[event["zone"]] if "zone" in event else ""}
    return template.format(**values)


# ---------------------------------------------------------------- chunks and questions


@dataclass
class Chunk:
    chunk_id: str  # <match>_<set>_<rally>_chunk<n>
    strokes: list  # ordered by ball_round


def rally_chunks(strokes: Sequence, size: int) -> list[Chunk]:
    """Group by (match, set, rally), order by ball_round, cut into consecutive chunks of `size`."""
    rallies: dict[tuple, list] = {}
    for s in strokes:
        rallies.setdefault((s.match, s.set, s.rally), []).append(s)
    chunks = []
    for (match, set_no, rally), group in sorted(rallies.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        group.sort(key=lambda s: (s.ball_round, s.frame))
        for n, start in enumerate(range(0, len(group), size)):
            chunks.append(Chunk(f"{match}_{set_no}_{rally}_chunk{n}", group[start:start + size]))
    return chunks


def vocabulary_events(kind: str, strokes: Sequence[str] = STROKES, zones: Sequence[int] = tuple(ZONE_PHRASES),
                      sides: Sequence[str] = SIDES) -> list[dict]:
    """Every event of a kind the vocabularies can express."""
    values = {"side": sides, "stroke": strokes, "zone": zones}
    events: list[dict] = [{}]
    for f in KIND_FIELDS[kind]:
        events = [{**e, f: v} for e in events for v in values[f]]
    return events


def chunk_rng(seed: int, chunk_id: str) -> random.Random:
    """A generator that depends only on the seed and the chunk (stable when other data changes)."""
    digest = hashlib.sha256(f"{seed}:{chunk_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def chunk_questions(chunk: Chunk, rng: random.Random, cot: bool = False,
                    positives: int = POSITIVES_PER_CHUNK) -> list[dict]:
    """The chunk's questions: one negative per kind (if the vocabularies allow one), then positives.

    A kind with no absent event (every zone occurs in the chunk) gets a positive instead.

    Positives cycle through the chunk's distinct (kind, event) pairs in a random order, so every
    distinct event is asked before any is asked twice (with another template).
    """
    items = []
    for kind in KINDS:
        absent = [e for e in vocabulary_events(kind) if not matching_indices(chunk.strokes, e)]
        if absent:
            items.append(_item(chunk, kind, rng.choice(absent), rng, cot))
    positives += NEGATIVES_PER_CHUNK - len(items)  # e.g. all 7 zones in a 10-stroke chunk: keep 14 questions
    distinct = list({(k, tuple(sorted(event_of(s, k).items()))) for s in chunk.strokes for k in KINDS})
    distinct.sort()
    rng.shuffle(distinct)
    for j in range(positives if distinct else 0):
        kind, event = distinct[j % len(distinct)]
        items.append(_item(chunk, kind, dict(event), rng, cot))
    for q, item in enumerate(items):
        item["question_id"] = f"{chunk.chunk_id}_q{q}"
    return items


def questions_of(strokes: Sequence, seed: int = 0, size: int = CHUNK) -> list[dict]:
    """Every chunk's questions, as qa_*.json hold them, for strokes with .match, .set, .rally,
    .ball_round, .frame, .stroke_id and the fields and caption (a match's fine-tune data)."""
    return [it for ch in rally_chunks(strokes, size) for it in chunk_questions(ch, chunk_rng(seed, ch.chunk_id))]


def draw_question(chunk: Chunk, rng: random.Random, negatives: float) -> dict:
    """One question about the chunk, drawn afresh: with probability `negatives` about an event
    that no stroke of the chunk matches (where the vocabularies leave one), else about its strokes."""
    items = chunk_questions(chunk, rng)
    impossible = rng.random() < negatives
    wanted = [it for it in items if it["is_impossible"] == impossible]
    return rng.choice(wanted or items)


def oversample_impossible(items: list[dict], share: float, seed: int = 0) -> list[dict]:
    """The items plus repeats of their impossible questions, until these make up `share` of the
    list (whole copies, then a seeded sample of the remainder); no question is dropped, and a
    list already at or above the share is returned as it is."""
    if not 0 < share < 1:
        raise ValueError(f"the share of impossible questions must be between 0 and 1, got {share}")
    impossible = [it for it in items if it["is_impossible"]]
    answerable = len(items) - len(impossible)
    extra = round(share * answerable / (1 - share)) - len(impossible)
    if not impossible or extra <= 0:
        return items
    copies, rest = divmod(extra, len(impossible))
    return items + impossible * copies + random.Random(seed).sample(impossible, rest)


def _item(chunk: Chunk, kind: str, event: dict, rng: random.Random, cot: bool) -> dict:
    indices = matching_indices(chunk.strokes, event)
    answer = format_cot_answer([s.caption for s in chunk.strokes], indices) if cot else format_answer(indices)
    return {
        "question_id": "",
        "image": [f"clips/{s.stroke_id}.mp4" for s in chunk.strokes],
        "question": fill_template(rng.choice(TEMPLATES[kind]), event),
        "answer": answer,
        "is_impossible": not indices,
        "chunk_id": chunk.chunk_id,
        "kind": kind,
        "indices": indices,
        "event": event,
    }
