"""Speed and memory of stroke detection (`core.detect`) beside decoding the same file alone.

    python -m tests.benchmarks.bench_detect [--video FILE] [--size 1280x720] [--rallies 1-36] [--hour]

Without --video, a broadcast-style render (train.replay, sound and cut-aways) of the first set of a
ShuttleSet match is made (kept in --work, so a second run reuses it; 1-36 rallies of that set make
about 12 minutes at 25 fps). Each figure runs in its own process, so its peak memory (max RSS) is its own:

- decoding alone, PyAV on every core (the fastest plain decode of the file), and OpenCV's reader;
- detection: one decode pass, motion features, the vision model, the sound track; decisions;
- with --hour, the same detection on the file repeated to an hour by stream copy (no re-encode):
  memory has to stay about what the short file takes, and the speed the same.
Target: detection at least half the speed of decoding alone. Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data" / "shuttleset"  # beside the repository
EXCERPT = REPO / "tests" / "data" / "shuttleset"
MATCH = "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"  # in the repository's excerpt too


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, video: Path, threads: int) -> dict:
    """One figure, in this process: frames, seconds (after imports and model loading), peak MB."""
    import av
    import cv2
    import torch

    from core.detect import decide, open_detector, score_video

    torch.set_num_threads(threads)
    net, cfg = open_detector()
    t = time.perf_counter()
    if kind == "decode-av":
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            frames = sum(1 for _ in c.decode(s))
    elif kind == "decode-opencv":
        cap = cv2.VideoCapture(str(video))
        frames = 0
        while cap.grab():  # grab + retrieve = read(), as a reader that shows each frame does
            ok, _ = cap.retrieve()
            frames += ok
        cap.release()
    elif kind == "detect":
        scores = score_video(video, net)
        det = decide(scores, cfg)
        frames = len(scores.hit)
        extra = {"strokes": len(det.strokes), "rallies": len(det.rallies), "sound": det.audio}
    else:
        raise ValueError(kind)
    out = {"kind": kind, "frames": frames, "seconds": time.perf_counter() - t, "peak_mb": _peak_mb()}
    return out | (extra if kind == "detect" else {})


def run_child(kind: str, video: Path, threads: int) -> dict:
    cmd = [sys.executable, "-m", "tests.benchmarks.bench_detect", "--measure", kind, "--video", str(video),
           "--threads", str(threads)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def render(data: Path, work: Path, size: str, rallies: str) -> Path:
    from train.replay import render_set

    set_csv = data / MATCH / "set1.csv"
    if not set_csv.is_file():
        set_csv = EXCERPT / MATCH / "set1.csv"
    w, h = (int(x) for x in size.lower().split("x"))
    out = work / f"render_{w}x{h}_{rallies}"
    video = out / MATCH / "set1.mp4"
    if not video.is_file():
        print(f"rendering rallies {rallies} of {set_csv.parent.name} set 1 at {w}x{h} ...", flush=True)
        render_set(set_csv, out, rallies=rallies, seed=1, size=(w, h))
    return video


def repeat(video: Path, times: int, out: Path) -> Path:
    """The file played `times` times in a row, by stream copy (packets re-stamped, nothing re-encoded)."""
    import av

    if out.is_file():
        return out
    with av.open(str(video)) as src:
        first, last = {}, {}
        for packet in src.demux():  # each stream's decode-time span in its own time base
            if packet.dts is not None:
                i = packet.stream.index
                first[i] = min(first.get(i, packet.dts), packet.dts)
                last[i] = max(last.get(i, packet.dts), packet.dts + (packet.duration or 1))
        span = {i: last[i] - first[i] for i in first}
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as dst:
        with av.open(str(video)) as src:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for k in range(times):
            with av.open(str(video)) as src:
                for packet in src.demux():
                    if packet.dts is None or packet.stream.index not in streams:
                        continue
                    shift = k * span[packet.stream.index]
                    packet.pts = None if packet.pts is None else packet.pts + shift
                    packet.dts += shift
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
    tmp.rename(out)
    return out


def report(name: str, r: dict, fps: float | None = None, decode: dict | None = None) -> None:
    rate = r["frames"] / r["seconds"]
    line = f"  {name:<38} {r['frames']:>7} frames {r['seconds']:7.1f} s {rate:7.0f} frames/s  peak {r['peak_mb']:6.0f} MB"
    if decode is not None:
        line += f"  ({rate / (decode['frames'] / decode['seconds']):.2f} of decoding alone)"
    if fps:
        line += f"  [{r['frames'] / fps / 60:.1f} min of video]"
    print(line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_detect", description=__doc__.split("\n")[0])
    p.add_argument("--video", type=Path, help="a match video (default: a render made in --work)")
    p.add_argument("--data", type=Path, default=SHARED if SHARED.is_dir() else EXCERPT)
    p.add_argument("--size", default="1280x720", help="render size WxH (default 1280x720)")
    p.add_argument("--rallies", default="1-36", help="rallies of the render (default 1-36: about 12 minutes)")
    p.add_argument("--work", type=Path, default=None, help="folder for the render and the hour-long copy "
                                                             "(default: a temporary folder)")
    p.add_argument("--hour", action="store_true", help="also detect on the file repeated to an hour")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the vision model (default 1)")
    p.add_argument("--measure", choices=("decode-av", "decode-opencv", "detect"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.video, args.threads)))
        return 0
    with tempfile.TemporaryDirectory() as d:
        work = args.work or Path(d)
        work.mkdir(parents=True, exist_ok=True)
        video = args.video or render(args.data, work, args.size, args.rallies)
        import av

        with av.open(str(video)) as c:
            s = c.streams.video[0]
            fps, size = float(s.average_rate or 25), f"{s.codec_context.width}x{s.codec_context.height}"
        print(f"{video.name}: {size}, {fps:g} fps; cpu count {os.cpu_count()}, torch threads {args.threads}")
        dec = run_child("decode-av", video, args.threads)
        report("decoding alone (PyAV, every core)", dec, fps)
        report("decoding alone (OpenCV reader)", run_child("decode-opencv", video, args.threads), fps)
        det = run_child("detect", video, args.threads)
        report("detection (picture + sound)", det, fps, dec)
        print(f"  {det['strokes']} strokes in {det['rallies']} rallies, sound track {'used' if det['sound'] else 'absent'}")
        print("  target: detection at least 0.5 of decoding alone")
        if args.hour:
            minutes = det["frames"] / fps / 60
            times = max(2, round(60 / minutes))
            long = repeat(video, times, work / f"{video.stem}_x{times}.mp4")
            dec_h = run_child("decode-av", long, args.threads)
            report(f"decoding alone, x{times}", dec_h, fps)
            det_h = run_child("detect", long, args.threads)
            report(f"detection, x{times}", det_h, fps, dec_h)
            print(f"  peak memory x{times} / x1: {det_h['peak_mb'] / det['peak_mb']:.2f}; "
                  f"strokes {det_h['strokes']} (x1: {det['strokes']} x {times} = {det['strokes'] * times})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
