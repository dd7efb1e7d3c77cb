"""The video readers side by side on one file: frames per second of a full sequential decode into
BGR arrays (what indexing and detection consume), for OpenCV (what core.video reads with), PyAV
with and without its decoding threads, and decord.

    python -m tests.benchmarks.bench_decode [--video FILE] [--repeats 3]

Not a test: it prints figures, it asserts nothing; the last line is one JSON object with each
reader's frames per second and its ratio to OpenCV's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
DEMO_VIDEO = next((REPO / "assets" / "demo-match").glob("*/set1.mp4"), None)


def opencv(path: str) -> int:
    cap, n = cv2.VideoCapture(path), 0
    try:
        while cap.read()[0]:
            n += 1
    finally:
        cap.release()
    return n


def pyav(path: str, threads: bool) -> int:
    import av

    with av.open(path) as f:
        stream = f.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        return sum(1 for frame in f.decode(stream) if frame.to_ndarray(format="bgr24") is not None)


def decord_reader(path: str) -> int:
    import decord

    vr = decord.VideoReader(path)
    return sum(1 for i in range(len(vr)) if vr[i].asnumpy() is not None)


READERS: dict[str, Callable[[str], int]] = {
    "opencv": opencv,
    "pyav": lambda p: pyav(p, False),
    "pyav_threads": lambda p: pyav(p, True),
    "decord": decord_reader,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_decode", description=__doc__.split("\n")[0])
    p.add_argument("--video", default=str(DEMO_VIDEO) if DEMO_VIDEO else None,
                   help="the file to decode (default: the demo match's set video)")
    p.add_argument("--repeats", type=int, default=3, help="decodes per reader (the fastest counts)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.video or not Path(args.video).is_file():
        print(f"error: no video at {args.video}", file=sys.stderr)
        return 2
    fps = {}
    for name, read in READERS.items():
        best = float("inf")
        for _ in range(max(1, args.repeats)):
            t = time.perf_counter()
            frames = read(args.video)
            best = min(best, time.perf_counter() - t)
        fps[name] = frames / best
        print(f"{name:13s} {frames} frames, {fps[name]:8.0f} frames/s")
    fastest = max(fps, key=fps.get)
    print(f"fastest here: {fastest}")
    print(json.dumps({**{f"{k}_fps": round(v) for k, v in fps.items()},
                      **{f"{k}_over_opencv": round(v / fps['opencv'], 2) for k, v in fps.items()}, "fastest": fastest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
