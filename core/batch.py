"""Index a season: every set of many matches, on a Ray cluster, into one index.

    python -m core.batch --videos DIR --annotations DIR --db DB --model M [--ray ADDRESS] [--actors N]

Every set file under --annotations (ShuttleSet's layout, `<match>/setN.csv`) is a set; its video is
found under --videos as train.build_dataset finds it (core.video.find_video). Without --ray a local
Ray instance starts on this machine; with an address (`ray start --head` prints it) the command
joins that cluster. CPU workers decode the videos and cut the stroke windows, an actor pool runs
the model (`num_gpus` per actor where the cluster has GPUs; core.batch_remote), and this process
is the one writer: it puts the tokens and captions into the caches and writes each set with
StrokeStore.write_set, as core.indexer.add_match does, with the same batches, so the index is
the one the single-process indexer writes. A set is all or nothing, and a re-run skips every set
already written from the same set file and video with the same model. On a cluster, the videos,
set files and model are read by the workers: every node needs them (and this repository) at the
same paths.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.annotations import AnnotationError
from core.config import CAPTION_BATCH, GenerationSettings
from core.indexer import planned_video_frames
from core.store import DEFAULT_DB, IndexStoreError, SetSource, StrokeStore, set_source
from core.video import VideoError, find_video, probe

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
IN_FLIGHT = 2  # encode batches sent ahead per actor, so that it never waits for this process
DECODED_AHEAD = 4  # pixel batches a decoding task may hold before the model takes them
CONNECT_TIMEOUT_S = 10.0


class BatchError(RuntimeError):
    """Input the command cannot work with; the message says what and why, in one line."""


@dataclass
class SetJob:
    """One set to index: its source, its video and the hit frames the model pass covers."""

    csv: Path
    src: SetSource
    video: Path
    vhash: str
    fps: float
    frames: list[int]

    @property
    def name(self) -> str:
        return f"{self.src.match} set {self.src.set_no}"


def find_sets(store: StrokeStore, annotations: Path, videos: Path) -> tuple[list[SetJob], list[str]]:
    """Every set file under `annotations` with its video: (the sets, one line per set that cannot
    be indexed, saying why)."""
    for folder, flag in ((annotations, "--annotations"), (videos, "--videos")):
        if not folder.is_dir():
            raise BatchError(f"{flag} {folder}: no such folder")
    files = sorted(annotations.rglob("set*.csv"))
    if not files:
        raise BatchError(f"{annotations}: no set files (<match>/setN.csv) in it")
    jobs, problems = [], []
    for csv in files:
        try:
            src = set_source(csv, workspace=store.workspace)
            twin = next((j for j in jobs if (j.src.match, j.src.set_no) == (src.match, src.set_no)), None)
            if twin is not None:
                raise BatchError(f"{twin.csv} is {twin.name} too; index one file per set")
            video = find_video(videos, src.match, src.set_no)
            if video is None:
                raise BatchError(f"no video for {src.match} set {src.set_no} in {videos}")
            jobs.append(SetJob(csv, src, video, store.video_hash(video), probe(video).fps,
                               planned_video_frames(store, src, video)))
        except (AnnotationError, VideoError, BatchError, ValueError, OSError) as err:
            problems.append(f"{csv}: {err}")
    return jobs, problems


def written_sets(store: StrokeStore) -> dict[tuple[str, int], dict]:
    """(match name, set number) -> the set's row, for every set in the index."""
    return {(m["name"], s["set_no"]): s for m in store.matches() for s in store.sets(m["id"])}


def is_done(store: StrokeStore, job: SetJob, written: dict[tuple[str, int], dict], keys: tuple[str, str]) -> bool:
    """The set is in the index as this run would write it (same set file, video and model) and
    every hit frame has its caption (a stroke a coach added since would not)."""
    row = written.get((job.src.match, job.src.set_no))
    return bool(row) and row["status"] == "complete" and (
        row["source_hash"], row["video_hash"], row["video"], row["encoder_key"], row["captioner_key"]
    ) == (job.src.source_hash, job.vhash, str(job.video.resolve()), *keys) and (
        set(job.frames) <= store.captioned_frames(job.vhash, keys[1]))


class SeasonIndexer:
    """Runs the sets on the actors (one driver thread per actor) and writes them to the store."""

    def __init__(self, store: StrokeStore, workers: list, info: dict, batch_size: int = 8,
                 caption_batch: int = CAPTION_BATCH, settings: GenerationSettings | None = None):
        self.store, self.workers, self.info = store, workers, info
        self.keys: tuple[str, str] = tuple(info["keys"])
        self.batch_size, self.caption_batch, self.settings = batch_size, caption_batch, settings

    def run(self, jobs: list[SetJob], report: Callable[[str, bool], None]) -> dict:
        """Index the sets not done yet: {'indexed', 'skipped', 'failed'} counts. report(line, failed)
        gets one line per set."""
        todo: queue.Queue = queue.Queue()
        out = {"indexed": 0, "skipped": 0, "failed": 0}
        written = written_sets(self.store)
        for job in jobs:
            if is_done(self.store, job, written, self.keys):
                out["skipped"] += 1
                report(f"skipped {job.name}: already indexed with this model", False)
            else:
                todo.put(job)
        lock = threading.Lock()

        def drive(worker) -> None:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    self.index_set(job, worker)
                    line, key = f"indexed {job.name}: {len(job.src.rows)} strokes", "indexed"
                except Exception as err:  # noqa: BLE001 - one set's failure is reported; the others go on
                    line, key = f"{job.csv}: {_reason(err)}", "failed"
                with lock:
                    out[key] += 1
                    report(line, key == "failed")

        threads = [threading.Thread(target=drive, args=(w,), name=f"set-driver-{i}") for i, w in enumerate(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def index_set(self, job: SetJob, worker) -> None:
        """core.indexer.add_match for one set, the model on `worker`: tokens and captions into the
        caches in the batches model_pass makes, then the set in one transaction."""
        import ray

        from core.batch_remote import cut_batches

        ekey, ckey = self.keys
        cache = self.store.token_cache(job.vhash, ekey)
        have_cap = self.store.captioned_frames(job.vhash, ckey)
        decode = [f for f in job.frames if not cache.has(f)]
        from_cache = [f for f in job.frames if cache.has(f) and f not in have_cap]
        pending: list[tuple[int, np.ndarray]] = []  # tokens waiting for their caption, in model_pass's order

        def caption_pending(final: bool = False) -> None:
            while pending and (final or len(pending) >= self.caption_batch):
                part = pending[:self.caption_batch]
                del pending[:self.caption_batch]
                texts = ray.get(worker.caption.remote(np.stack([t for _, t in part]), self.settings,
                                                      self.caption_batch))
                self.store.cache_captions(job.vhash, ckey, [(f, t) for (f, _), t in zip(part, texts)])

        def take_tokens(in_flight: deque) -> None:
            frames, tokens = ray.get(in_flight.popleft())
            for f, t in zip(frames, tokens):
                cache.put(f, t)  # before its caption: a resumed run captions from the cache
                if f not in have_cap:
                    pending.append((f, t))
            caption_pending()

        in_flight: deque = deque()
        if decode:
            batches = cut_batches.options(_generator_backpressure_num_objects=DECODED_AHEAD).remote(
                str(job.video), decode, self.info["image"], self.info["num_frames"], self.batch_size)
            for batch in batches:
                in_flight.append(worker.encode.remote(batch))
                if len(in_flight) > IN_FLIGHT:
                    take_tokens(in_flight)
        while in_flight:
            take_tokens(in_flight)
        pending.extend((f, cache.get(f)) for f in from_cache)
        caption_pending(final=True)
        self.store.write_set(job.src, job.video, job.vhash, job.fps, self.keys)


def _reason(err: BaseException) -> str:
    """The first line of what went wrong, through Ray's wrapping of a worker's exception."""
    while getattr(err, "cause", None) is not None and err.cause is not err:
        err = err.cause
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------- Ray and the command line


def start_ray(address: str | None, cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray instance (`cpus`: how many CPUs it may
    use; None: all). A process that has Ray running already keeps it. True when this call started it."""
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    # the workers import this repository's modules, from where the driver has them
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    options = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise BatchError(f"cannot {'join the Ray cluster at ' + address if address else 'start Ray'}: "
                         f"{_reason(err)}") from None
    return True


def _check_reachable(address: str) -> None:
    """BatchError at once when nothing answers at a HOST:PORT address (Ray itself retries for minutes)."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if m is None:
        return  # 'auto' and other forms Ray resolves itself
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise BatchError(f"cannot join the Ray cluster at {address}: nothing answers there ({err})") from None


def start_workers(actors: int | None, model: str, gpus: float | None, precision: str = "fp32",
                  threads: int | None = None) -> tuple[list, dict]:
    """The actor pool and what its model tells (`StrokeWorker.describe`). `actors` None: one per GPU
    of the cluster, else 1; `gpus` (per actor) None: 1 where the cluster has GPUs, else 0."""
    import ray

    from core.batch_remote import StrokeWorker

    have = ray.cluster_resources().get("GPU", 0)
    gpus = (1.0 if have else 0.0) if gpus is None else gpus
    actors = actors or (max(1, int(have // gpus)) if gpus else 1)
    if gpus * actors > have:
        raise BatchError(f"{actors} actors with {gpus:g} GPU each need {gpus * actors:g} GPUs; the cluster has {have:g}")
    # an actor holds no CPU: held CPUs would leave none for the decoding tasks that feed it
    workers = [StrokeWorker.options(num_cpus=0, num_gpus=gpus).remote(str(Path(model).resolve()), precision, threads)
               for _ in range(actors)]
    infos = ray.get([w.describe.remote() for w in workers])
    errors = [i["error"] for i in infos if "error" in i]
    if errors:
        for w in workers:
            ray.kill(w)
        raise BatchError(errors[0])
    return workers, infos[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.batch",
                                description="Index many matches on a Ray cluster into one index.")
    p.add_argument("--videos", required=True, help="folder of the set videos (<match>/setN.mp4 or <match>_setN.mp4)")
    p.add_argument("--annotations", required=True, help="folder of the set files (<match>/setN.csv, ShuttleSet's layout)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"index file (default {DEFAULT_DB})")
    p.add_argument("--model", required=True, help="stage-1 adapter folder (with manifest.json)")
    p.add_argument("--ray", metavar="ADDRESS", help="join this Ray cluster (default: start one on this machine)")
    p.add_argument("--actors", type=_positive, help="model actors (default: one per GPU of the cluster, else 1)")
    p.add_argument("--gpus-per-actor", type=float, help="GPUs each actor holds (default: 1 where there are GPUs)")
    p.add_argument("--cpus", type=_positive, help="CPUs a local Ray instance may use (default: all)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--threads", type=_positive, help="torch CPU threads per actor")
    p.add_argument("--no-embed", action="store_true", help="do not embed captions now (queries do it later)")
    return p


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)

    def report(line: str, failed: bool) -> None:
        print(f"error: {line}" if failed else line, file=sys.stderr if failed else sys.stdout, flush=True)

    try:
        import ray
    except ImportError:
        report("python -m core.batch needs Ray: pip install -r requirements-scale.txt", True)
        return 1
    from core.loader import ModelLoadError, read_manifest  # torch loads only when the command runs

    started, workers, counts = False, [], {"indexed": 0, "skipped": 0, "failed": 0}
    try:
        read_manifest(args.model)  # an unknown model is refused before any worker starts
        store = StrokeStore(args.db)
        jobs, problems = find_sets(store, Path(args.annotations), Path(args.videos))
        for line in problems:
            report(line, True)
        counts["failed"] = len(problems)
        if jobs:
            started = start_ray(args.ray, args.cpus)
            workers, info = start_workers(args.actors, args.model, args.gpus_per_actor, args.precision, args.threads)
            done = SeasonIndexer(store, workers, info, args.batch_size).run(jobs, report)
            counts = {k: v + counts[k] for k, v in done.items()}
        if counts["indexed"] and not args.no_embed:
            from core.embed import default_embedder
            from core.query import QueryEngine

            QueryEngine(store, default_embedder()).arrays()  # embeds every new caption once, as core.index does
    except (BatchError, ModelLoadError, IndexStoreError) as err:
        report(str(err), True)
        return 1
    finally:
        for w in workers:
            ray.kill(w)
        if started:
            ray.shutdown()
    print(json.dumps({"sets": sum(counts.values()), **counts}))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
