"""Indexing killed with SIGKILL at several points (before the first batch, after one, late in the
pass, inside the final transaction), on a new set and during a re-index with a half-readable video:
the index is as before the run, and running again resumes exactly (no stroke through the vision
twice) to what an uninterrupted run writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.indexer import add_match
from core.store import StrokeStore
from core.video import VideoError
from tests.hostile import half_readable_video, index_state
from tests.test_index import FAST, HITS, count_calls, tiny_model, token_files, write_reference_csv

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2


def child(db: str, annotations: str, video: str, base: str, kill_at: str) -> None:
    """Index in this process and kill it with SIGKILL at `kill_at`: 'done>=N' (N strokes finished)
    or 'write' (inside the transaction that writes the set)."""
    import torch

    torch.set_num_threads(1)
    store = StrokeStore(db)
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
    if kill_at == "write":
        write_rows = store._write_rows

        def write_then_die(*args):
            write_rows(*args)
            die()
        store._write_rows = write_then_die
    at = int(kill_at[len("done>="):]) if kill_at.startswith("done>=") else None
    progress = (lambda done, total, what: die() if done >= at else None) if at is not None else None
    add_match(store, annotations, video, model=tiny_model(base), batch_size=BATCH, caption_batch=BATCH,
              settings=FAST, progress=progress)


def run_killed(db: Path, annotations: Path, video: Path, base: Path, kill_at: str) -> None:
    code = "import sys; from tests.test_index_crash import child; child(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(db), str(annotations), str(video), str(base), kill_at],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def model(tiny_base):
    return tiny_model(tiny_base)


def captions(store: StrokeStore) -> list[tuple]:
    return [(r["frame"], r["model_caption"]) for r in store.strokes()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, index_video, model) -> list[tuple]:
    folder = tmp_path_factory.mktemp("whole")
    store = StrokeStore(folder / "ws.sqlite")
    add_match(store, write_reference_csv(folder / "demo.csv"), index_video, model=model, batch_size=BATCH,
              caption_batch=BATCH, settings=FAST)
    return captions(store)


@pytest.mark.parametrize("kill_at", ["done>=0", f"done>={BATCH}", f"done>={len(HITS) - BATCH}", "write"])
def test_a_new_set_killed_anywhere_is_absent_then_resumes_exactly(tmp_path, index_video, tiny_base, model,
                                                                   uninterrupted, kill_at):
    db, ann = tmp_path / "ws.sqlite", write_reference_csv(tmp_path / "demo.csv")
    empty = index_state(StrokeStore(db))
    run_killed(db, ann, index_video, tiny_base, kill_at)
    store = StrokeStore(db)
    assert index_state(store) == empty
    cached = len(token_files(store))
    counts = count_calls(model)
    add_match(store, ann, index_video, model=model, batch_size=BATCH, caption_batch=BATCH, settings=FAST)
    assert counts["clips"] == len(HITS) - cached  # exactly the strokes the killed run had not encoded
    assert captions(store) == uninterrupted


@pytest.mark.parametrize("kill_at", ["done>=0", f"done>={BATCH}"])
def test_a_reindex_with_a_half_readable_video_killed_or_failing_keeps_the_old_set(tmp_path, index_video, tiny_base,
                                                                                 model, kill_at):
    db, ann = tmp_path / "ws.sqlite", write_reference_csv(tmp_path / "demo.csv")
    store = StrokeStore(db)
    add_match(store, ann, index_video, model=model, batch_size=BATCH, caption_batch=BATCH, settings=FAST)
    store.set_caption(store.strokes()[2]["id"], "bottom player hits a deep lob")
    before = index_state(store)
    half = half_readable_video(tmp_path / "half.mp4")
    run_killed(db, ann, half, tiny_base, kill_at)
    store = StrokeStore(db)
    assert index_state(store) == before
    with pytest.raises(VideoError, match="past the last frame"):
        add_match(store, ann, half, model=model, batch_size=BATCH, caption_batch=BATCH, settings=FAST)
    assert index_state(store) == before
    assert store.strokes()[2]["caption"] == "bottom player hits a deep lob"
