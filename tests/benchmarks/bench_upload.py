"""Memory of saving a large browser upload into the workspace, beside the idle figure.

    python -m tests.benchmarks.bench_upload [--size-mb 1024]

Writes a file of --size-mb, then `Engine.save_upload` copies it into a fresh workspace's uploads/
as the app does with Gradio's temporary file. The process's resident memory (VmRSS) is sampled
every 2 ms while it copies; the peak is printed beside the idle RSS just before and beside the
baseline of reading the file whole, which raises the peak by the file's size.
Not a test: it prints figures, it asserts nothing.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from core.engine import Engine

BLOCK = 1 << 20


def rss_mib() -> float:
    """This process's resident memory now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def peak_while(call) -> tuple[float, float]:
    """(peak RSS in MiB while `call` runs, its seconds)."""
    peak, done = [rss_mib()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.002)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    call()
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    return max(peak[0], rss_mib()), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_upload", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="size of the upload in MiB (default 1024)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "match.mp4"
        block = bytes(range(256)) * (BLOCK // 256)
        with upload.open("wb") as f:
            for _ in range(args.size_mb):
                f.write(block)
        engine = Engine(Path(tmp) / "ws", demo_match=Path(tmp) / "no-demo")
        idle = rss_mib()
        peak, seconds = peak_while(lambda: engine.save_upload(upload, "bench"))
        whole, _ = peak_while(lambda: len(upload.read_bytes()))
    print(f"[upload of {args.size_mb} MiB saved into the workspace in {seconds:.2f} s]")
    print(f"  idle RSS                         {idle:8.1f} MiB")
    print(f"  peak RSS while saving            {peak:8.1f} MiB")
    print(f"  peak over idle                   {peak - idle:8.1f} MiB")
    print(f"  baseline: the file read whole    {whole - idle:8.1f} MiB over idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
