"""Playlists: an ordered list of strokes or rallies (from answers), reordered, saved under a name in
the workspace, played, and exported as a CSV, one highlight mp4 with a title card per clip, or a
CMX 3600 edit decision list (EDL) that video editors import."""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

from core.workspace import safe_name

# What a saved playlist keeps of a row: enough to show, play and export it again.
FIELDS = ("kind", "id", "match", "match_id", "set_no", "rally", "ball_round", "time_s", "start_s", "end_s",
          "side", "player_name", "stroke", "zone", "caption", "source", "video", "frame", "score_before",
          "shots", "won_by", "ending")
MAX_ITEMS = 500


class PlaylistError(ValueError):
    """A playlist name, file or edit that cannot be used (said in plain words)."""


def key(row: dict) -> tuple:
    """What makes two rows the same clip (a stroke or a rally of a set)."""
    return (row.get("kind") or "stroke", row.get("match_id"), row.get("set_no"), row.get("rally"),
            None if row.get("kind") == "rally" else row.get("ball_round"))


def add(items: list[dict], rows: list[dict]) -> list[dict]:
    """`items` with the `rows` not already in it appended, in their order."""
    seen = {key(r) for r in items}
    out = list(items)
    for r in rows:
        if key(r) not in seen:
            seen.add(key(r))
            out.append({k: r.get(k) for k in FIELDS if r.get(k) is not None})
    if len(out) > MAX_ITEMS:
        raise PlaylistError(f"a playlist holds at most {MAX_ITEMS} clips")
    return out


def move(items: list[dict], index: int, delta: int) -> tuple[list[dict], int]:
    """(items with `index` moved by `delta` places, clamped to the ends; its new index)."""
    if not 0 <= index < len(items):
        raise PlaylistError("pick a clip of the playlist first (click its row)")
    to = min(max(index + delta, 0), len(items) - 1)
    out = list(items)
    out.insert(to, out.pop(index))
    return out, to


def remove(items: list[dict], index: int) -> list[dict]:
    if not 0 <= index < len(items):
        raise PlaylistError("pick a clip of the playlist first (click its row)")
    return items[:index] + items[index + 1:]


def _file(folder: Path, name: str) -> Path:
    stem = safe_name(name, "")
    if not stem:
        raise PlaylistError("give the playlist a name (letters, digits, '-' or '_')")
    return folder / f"{stem}.json"


def save(folder: Path, name: str, items: list[dict]) -> Path:
    """Write the playlist to `folder`/<name>.json, whole or not at all (a temporary file renamed)."""
    if not items:
        raise PlaylistError("the playlist is empty: add the results of a question first")
    path = _file(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"name": name.strip(), "items": [{k: r.get(k) for k in FIELDS if r.get(k) is not None}
                                                                for r in items]}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load(folder: Path, name: str) -> list[dict]:
    path = _file(folder, name)
    if not path.is_file():
        raise PlaylistError(f"no playlist named “{name}”")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["items"]
    except (ValueError, KeyError, TypeError) as err:
        raise PlaylistError(f"the playlist file {path.name} cannot be read ({err})") from None
    if not isinstance(items, list) or not all(isinstance(r, dict) and "start_s" in r for r in items):
        raise PlaylistError(f"the playlist file {path.name} holds no clips")
    return [{k: r.get(k) for k in FIELDS if r.get(k) is not None} for r in items][:MAX_ITEMS]


def names(folder: Path) -> list[str]:
    """The saved playlists, by name."""
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _ascii(text: str) -> str:
    """Text a Hershey font draws (accents dropped, other letters left out)."""
    return unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()


def title(row: dict) -> list[str]:
    """The lines of a clip's title card: where it is in the match, who and what, its caption."""
    where = f"Set {row.get('set_no', '?')}  Rally {row.get('rally', '?')}"
    if row.get("kind") == "rally":
        head = where + (f"  ({row['score_before']})" if row.get("score_before") else "")
        lines = [head, f"{row.get('shots', '?')} shots" + (f", won by {row['won_by']}" if row.get("won_by") else "")]
        if row.get("ending"):
            lines.append(str(row["ending"]))
    else:
        head = where + (f"  Stroke {row['ball_round']}" if row.get("ball_round") is not None else "")
        who = " ".join(str(x) for x in (row.get("player_name") or row.get("side"), row.get("stroke")) if x)
        lines = [head] + ([who] if who else []) + ([str(row["caption"])] if row.get("caption") else [])
    return [_ascii(s) for s in lines]


def timecode(seconds: float, fps: int) -> str:
    """HH:MM:SS:FF, non-drop frame (half frames round up)."""
    frames = max(0, int(seconds * fps + 0.5))
    s, f = divmod(frames, fps)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}"


def edl(name: str, clips: list[tuple[dict, float, float, float]]) -> str:
    """A CMX 3600 EDL of (row, source in s, source out s, source fps) clips, cut one after another
    on the record side; each event names its source file and says what the clip is."""
    lines = [f"TITLE: {_ascii(name)[:70] or 'Shuttle Lens playlist'}", "FCM: NON-DROP FRAME", ""]
    record = 0.0
    for n, (row, a, b, fps) in enumerate(clips, start=1):
        rate = max(1, int(round(fps)))
        length = max(b - a, 1.0 / rate)
        lines.append(f"{n:03d}  AX       V     C        {timecode(a, rate)} {timecode(a + length, rate)} "
                     f"{timecode(record, rate)} {timecode(record + length, rate)}")
        lines.append(f"* FROM CLIP NAME: {Path(str(row.get('video') or '')).name}")
        lines.append("* COMMENT: " + " / ".join(title(row)))
        lines.append("")
        record += length
    return "\n".join(lines)
