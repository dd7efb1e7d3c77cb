"""Index a match from the command line: strokes, captions and query tokens into the workspace's store.

    python -m core.index VIDEO_OR_NONE --annotations CSV [--db PATH] [--model DIR]
    python -m core.index VIDEO [--players "A,B"] [--first-server bottom|upper] [--db PATH] [--model DIR]

Without --annotations (and --frames) the video's strokes are detected (core.detect) and written
as a set CSV under the index's folder (DB_DIR/detected/<video stem>/set1.csv), then indexed as any
annotation file. The store is core.store, the model pass core.indexer, the token cache core.tokens.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from core.annotations import AnnotationError
from core.errors import ModelLoadError
from core.indexer import DETECTED_DIR, add_match, detect_set
from core.store import DEFAULT_DB, IndexStoreError, StrokeStore
from core.video import VideoError


class _ProgressBar:
    """A tqdm bar for the command line, made on the first report (when the total is known)."""

    def __init__(self, unit: str = "stroke") -> None:
        self.bar = None
        self.unit = unit

    def __call__(self, done: int, total: int, what: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit=self.unit, desc=what)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def read_frames(path: str | Path) -> list[int]:
    """Hit frames from a text file (one per line or comma separated); ValueError naming the first
    bad entry or an unreadable file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--frames {path}: cannot read the file ({err})") from None
    frames = []
    for word in text.replace(",", " ").split():
        if not word.isdigit():  # digits only: no sign, no decimals, no words
            raise ValueError(f"--frames {path}: {word[:40]!r} is not a frame number (whole numbers from 0)")
        frames.append(int(word))
    if not frames:
        raise ValueError(f"--frames {path}: no frame numbers in the file")
    return frames


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.index", description="Index a match: strokes, captions, tokens.")
    p.add_argument("video", help="the match (set) video, or NONE to index the annotations alone")
    p.add_argument("--annotations", help="ShuttleSet set CSV or the reference per-stroke CSV; without it (and "
                                         "--frames) the video's strokes are detected")
    p.add_argument("--players", help='detection: "Name A,Name B", the player starting in the bottom half first')
    p.add_argument("--first-server", choices=("bottom", "upper"), help="detection: the side of the first serve")
    p.add_argument("--frames", help="instead of annotations: a text file of hit frames "
                                    "(one per line or comma separated)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"index file (default {DEFAULT_DB})")
    p.add_argument("--model", help="stage-1 adapter folder (with manifest.json): captions and query tokens")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (on a busy machine 1 is often fastest)")
    p.add_argument("--no-embed", action="store_true", help="do not embed captions now (queries do it later)")
    p.add_argument("--export-captions", help="also write the corrected/annotation captions as train.json")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    from core.device import set_threads  # torch loads only when the command runs

    set_threads(args.threads)
    video = None if args.video.upper() == "NONE" else args.video
    frames = None
    if args.frames:
        try:
            frames = read_frames(args.frames)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    detecting = args.annotations is None and frames is None
    if detecting and video is None:
        print("error: give the video (its strokes are detected), or --annotations CSV", file=sys.stderr)
        return 2
    if not detecting and (args.players or args.first_server):
        print("error: --players and --first-server are for detection (no --annotations or --frames)",
              file=sys.stderr)
        return 2
    try:
        model = None
        if args.model:
            from core.loader import load_model

            model = load_model(args.model, device=args.device)
        store = StrokeStore(args.db)
        annotations = args.annotations
        if detecting:
            from core.detect import DetectError

            bar = _ProgressBar("frame")
            try:
                annotations = detect_set(video, store.path.resolve().parent / DETECTED_DIR, players=args.players,
                                         first_server=args.first_server, progress=bar)
            except DetectError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            finally:
                bar.close()
            print(f"detected strokes written to {annotations}")
        bar = _ProgressBar()
        try:
            match_id = add_match(store, annotations, video=video, model=model, progress=bar, frames=frames,
                                 batch_size=args.batch_size)
        finally:
            bar.close()
        if not args.no_embed:
            from core.embed import default_embedder
            from core.query import QueryEngine

            QueryEngine(store, default_embedder()).arrays()  # embeds every new caption once
        if args.export_captions:
            n = store.export_captions(args.export_captions)
            print(f"{n} captions written to {args.export_captions}")
    except (AnnotationError, VideoError, IndexStoreError, ValueError, OSError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    m = next(m for m in store.matches() if m["id"] == match_id)
    print(json.dumps(m, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
