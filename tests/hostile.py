"""Bad inputs for the reliability tests: videos that fail in different ways, an index snapshot."""
from __future__ import annotations

from pathlib import Path

import cv2

from core.encode import Writer
from tests.conftest import index_frame

TABLES = ("matches", "sets", "rallies", "strokes", "corrections", "stroke_edits")


def index_state(store) -> dict[str, list[tuple]]:
    """Every row of the index's tables, after PRAGMA integrity_check says the file is sound."""
    db = store.db
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {t: [tuple(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in TABLES}


def half_readable_video(path: Path, frames: int = 120, fps: float = 25) -> Path:
    """An mp4 whose index (moov) is at the front, cut in half: it opens and reports every frame,
    then decoding stops half-way."""
    whole = path.with_name(path.stem + "-whole.mp4")
    with Writer(whole, (96, 64), fps) as w:
        for i in range(frames):
            w.write(cv2.cvtColor(index_frame(i), cv2.COLOR_RGB2BGR))
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the case where the frame count survives the cut
    path.write_bytes(data[: len(data) // 2])
    whole.unlink()
    return path


def bad_videos(folder: Path, good: Path) -> dict[str, Path]:
    """Zero bytes, a CSV renamed .mp4, the first third of a good video, and a half-readable one."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"zero-byte": folder / "zero.mp4", "renamed": folder / "renamed.mp4", "truncated": folder / "cut.mp4"}
    out["zero-byte"].write_bytes(b"")
    out["renamed"].write_text("rally,ball_round,frame_num\n1,1,10\n" * 40)
    out["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    out["half-readable"] = half_readable_video(folder / "half.mp4")
    return out
