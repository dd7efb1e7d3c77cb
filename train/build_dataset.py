"""Annotations + match videos -> the two training stages' data.

    python -m train.build_dataset --annotations ../shared/data/shuttleset --videos renders/ --out data/badminton

Writes to --out:
  clips/<stroke_id>.mp4          frames hit-7 .. hit+8 (16) at the source video's fps
  train.json val.json test.json  stage-1 captions: [{"caption", "image": "clips/<id>.mp4", "image_id"}]
  val_gt.json test_gt.json       COCO-style references ({"images", "annotations"}) for caption metrics
  qa_train.json qa_val.json qa_test.json  stage-2 questions (see train/qa.py)
  manifest.json                  sources, options, counts per split, skipped counts

Videos: the video of a set file `<video>/setN.csv` (or of reference ids `<game>_<N>_<frame>`) is
`--videos DIR/<video>/setN.mp4` (the layout train/replay.py renders) or `DIR/<video>_setN.mp4`;
.mkv/.mov/.avi are accepted as well. Without --videos only captions and questions are written
(image paths still name the clips a later run would cut). With --videos, strokes whose video is
missing or whose hit frame lies outside it are left out and counted.

Splits are by match, so no match is in two splits: matches are shuffled with --seed and cut by
the --splits fractions, or named with --val-matches / --test-matches; `--splits annotations`
uses the reference CSV's split column instead. The reference system then moved 5 % of the val
questions to train (seed 42); --val-to-train 0.05 does the same (whole chunks move, so it does
break the match separation of the QA files). The product default is 0: val stays unseen.

Strokes without a caption (unknown type, or no zone) get no clip, no caption and no question;
they are left out of their rally before chunking (counted in the manifest).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from core.annotations import AnnotationError, ImportReport, Stroke, load_annotations
from core.video import find_video
from train.qa import CHUNK, COT_CHUNK, KINDS, chunk_questions, chunk_rng, rally_chunks

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class BuildError(RuntimeError):
    """A problem with the inputs or options, reported without a traceback."""


# ---------------------------------------------------------------- inputs


def annotation_files(paths: list[str]) -> list[Path]:
    """CSV files named directly, or every set*.csv below a named folder."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("set*.csv"))
            if not found:
                raise BuildError(f"{p}: no set*.csv files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise BuildError(f"{p}: no such annotation file or folder")
    return files


def load_strokes(files: list[Path], progress: bool = True) -> tuple[list[Stroke], ImportReport, int]:
    """All strokes of the files, the merged report, and how many were dropped as ambiguous.

    Real annotations sometimes put two strokes on one hit frame; their clips would be the same
    file and nothing says which label is right, so every stroke of such an id is dropped.
    """
    report = ImportReport(source="all")
    by_id: dict[str, list[Stroke]] = defaultdict(list)
    for f in tqdm(files, desc="annotations", unit="file", disable=not progress):
        table = load_annotations(f)
        report.merge(table.report)
        for s in table.strokes:
            by_id[s.stroke_id].append(s)
    strokes = [group[0] for group in by_id.values() if len(group) == 1]
    return strokes, report, sum(len(g) for g in by_id.values() if len(g) > 1)


# ---------------------------------------------------------------- splits


def parse_fractions(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SPLITS or not value:
            raise BuildError(f"--splits: expected e.g. train=0.8,val=0.1,test=0.1, got {text!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise BuildError(f"--splits: {value!r} is not a number") from None
    total = sum(out.values())
    if total <= 0 or any(v < 0 for v in out.values()):
        raise BuildError(f"--splits: fractions must be >= 0 and sum to more than 0, got {text!r}")
    return {k: out.get(k, 0.0) / total for k in SPLITS}


def split_matches(matches: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """match -> split; shuffled by seed, cut by fractions; each split with a share gets a match if it can."""
    order = sorted(set(matches))
    random.Random(seed).shuffle(order)
    n = len(order)
    counts = {k: int(round(fractions[k] * n)) for k in ("val", "test")}
    for k in ("val", "test"):  # a requested split gets at least one match
        if fractions[k] > 0 and counts[k] == 0:
            counts[k] = 1
    keep_train = 1 if fractions["train"] > 0 else 0
    while counts["val"] + counts["test"] > max(n - keep_train, 0):
        counts["val" if counts["val"] >= counts["test"] else "test"] -= 1
    counts["train"] = n - counts["val"] - counts["test"]
    out, i = {}, 0
    for k in ("val", "test", "train"):
        for m in order[i:i + counts[k]]:
            out[m] = k
        i += counts[k]
    return out


def assign_splits(strokes: list[Stroke], args) -> dict[str, str]:
    """stroke_id -> split, from the options."""
    matches = sorted({s.match for s in strokes})
    if args.val_matches or args.test_matches:
        named = {**{m: "val" for m in args.val_matches}, **{m: "test" for m in args.test_matches}}
        unknown = sorted(set(named) - set(matches))
        if unknown:
            raise BuildError(f"--val-matches/--test-matches name matches not in the annotations: {unknown}")
        overlap = set(args.val_matches) & set(args.test_matches)
        if overlap:
            raise BuildError(f"matches named for both val and test: {sorted(overlap)}")
        by_match = {m: named.get(m, "train") for m in matches}
    elif args.splits == "annotations":
        missing = sum(s.split not in SPLITS for s in strokes)
        if missing:
            raise BuildError(f"--splits annotations: {missing} strokes have no train/val/test split column value")
        return {s.stroke_id: s.split for s in strokes}
    else:
        by_match = split_matches(matches, parse_fractions(args.splits), args.seed)
    return {s.stroke_id: by_match[s.match] for s in strokes}


# ---------------------------------------------------------------- clips


def cut_clips(strokes: list[Stroke], videos: Path, out: Path, before: int, after: int,
              overwrite: bool = False, progress: bool = True) -> tuple[set[str], Counter]:
    """Write each stroke's clip in one sequential pass per video; the ids that have a clip, skip counts."""
    from core.video import VideoError, iter_windows, probe, write_video

    by_video: dict[tuple[str, int], list[Stroke]] = defaultdict(list)
    for s in strokes:
        by_video[(s.match, s.set)].append(s)
    done: set[str] = set()
    skipped: Counter = Counter()
    bar = tqdm(total=len(strokes), desc="clips", unit="clip", disable=not progress)
    for (match, set_no), group in sorted(by_video.items()):
        path = find_video(videos, match, set_no)
        if path is None:
            log.warning("no video for %s set %d in %s; %d strokes left out", match, set_no, videos, len(group))
            skipped["no video"] += len(group)
            bar.update(len(group))
            continue
        try:
            info = probe(path)
        except VideoError as err:
            log.warning("%s", err)
            skipped["unreadable video"] += len(group)
            bar.update(len(group))
            continue
        todo: dict[int, list[Stroke]] = defaultdict(list)
        for s in group:
            clip = out / "clips" / f"{s.stroke_id}.mp4"
            if not 0 <= s.frame < info.num_frames:
                skipped["hit frame outside video"] += 1
                bar.update(1)
            elif clip.is_file() and not overwrite:
                done.add(s.stroke_id)
                bar.update(1)
            else:
                todo[s.frame].append(s)
        try:
            for frame, frames in iter_windows(path, sorted(todo), before=before, after=after):
                for s in todo.pop(frame):
                    write_video(out / "clips" / f"{s.stroke_id}.mp4", frames, info.fps)
                    done.add(s.stroke_id)
                    bar.update(1)
        except VideoError as err:  # e.g. a frame count that overstated the frames really there
            log.warning("%s", err)
        left = sum(len(v) for v in todo.values())
        skipped["hit frame outside video"] += left
        bar.update(left)
    bar.close()
    return done, skipped


# ---------------------------------------------------------------- outputs


def caption_files(strokes: list[Stroke], split_of: dict[str, str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {k: [] for k in SPLITS}
    for s in strokes:
        out[split_of[s.stroke_id]].append(
            {"caption": s.caption, "image": f"clips/{s.stroke_id}.mp4", "image_id": s.stroke_id})
    return out


def coco_gt(items: list[dict]) -> dict:
    """COCO caption references: one image and one annotation per stroke."""
    return {
        "info": {"description": "Shuttle Lens stroke captions"},
        "images": [{"id": it["image_id"], "file_name": it["image"]} for it in items],
        "annotations": [{"id": k, "image_id": it["image_id"], "caption": it["caption"]}
                        for k, it in enumerate(items)],
    }


def qa_files(strokes: list[Stroke], split_of: dict[str, str], chunk_size: int, cot: bool, seed: int,
             val_to_train: float, progress: bool = True) -> tuple[dict[str, list[dict]], dict]:
    out: dict[str, list[dict]] = {k: [] for k in SPLITS}
    stats = Counter()
    chunks = rally_chunks(strokes, chunk_size)
    by_split: dict[str, list] = {k: [] for k in SPLITS}
    for ch in chunks:
        by_split[split_of[ch.strokes[0].stroke_id]].append(ch)
    if val_to_train > 0 and by_split["val"]:
        val = by_split["val"]
        moved = set(random.Random(seed).sample(range(len(val)), int(round(val_to_train * len(val)))))
        by_split["train"] += [c for i, c in enumerate(val) if i in moved]
        by_split["val"] = [c for i, c in enumerate(val) if i not in moved]
        stats["chunks moved val->train"] = len(moved)
    for split in SPLITS:
        for ch in tqdm(by_split[split], desc=f"questions {split}", unit="chunk", disable=not progress):
            items = chunk_questions(ch, chunk_rng(seed, ch.chunk_id), cot=cot)
            stats["negatives missing"] += len(KINDS) - sum(it["is_impossible"] for it in items)
            for it in items:
                it["split"] = split
            out[split].extend(items)
    stats["chunks"] = len(chunks)
    return out, dict(stats)


def write_json(path: Path, data, indent: int | None = None) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=indent), encoding="utf-8")


def build(args) -> dict:
    """The whole run; returns the manifest."""
    files = annotation_files(args.annotations)
    before, after = parse_window(args.window)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    strokes, report, duplicates = load_strokes(files, args.progress)
    log.info("annotations: %s", report.summary())
    captioned = [s for s in strokes if s.caption is not None]
    skipped = Counter({"no caption (unknown type or zone)": len(strokes) - len(captioned)})
    if duplicates:
        skipped["two strokes on one hit frame"] = duplicates
    if args.videos:
        videos = Path(args.videos)
        if not videos.is_dir():
            raise BuildError(f"--videos {videos}: no such folder")
        done, clip_skips = cut_clips(captioned, videos, out, before, after, args.overwrite, args.progress)
        skipped.update(clip_skips)
        captioned = [s for s in captioned if s.stroke_id in done]
        if not captioned:
            raise BuildError(f"no clips could be cut: no matching videos under {videos} "
                             "(expected <video>/setN.mp4 or <video>_setN.mp4)")
    split_of = assign_splits(captioned, args)
    captions = caption_files(captioned, split_of)
    for split, items in captions.items():
        write_json(out / f"{split}.json", items)
        if split != "train":
            write_json(out / f"{split}_gt.json", coco_gt(items))
    chunk = args.chunk or (COT_CHUNK if args.cot else CHUNK)
    qa, qa_stats = qa_files(captioned, split_of, chunk, args.cot, args.seed, args.val_to_train, args.progress)
    for split, items in qa.items():
        write_json(out / f"qa_{split}.json", items)
    manifest = {
        "sources": [str(f) for f in files],
        "videos": str(args.videos) if args.videos else None,
        "clips": bool(args.videos),
        "options": {"chunk": chunk, "cot": args.cot, "seed": args.seed, "window": [before, after],
                    "splits": args.splits, "val_matches": args.val_matches, "test_matches": args.test_matches,
                    "val_to_train": args.val_to_train},
        "annotations": report.summary(),
        "strokes": report.rows,  # every annotated stroke, before anything is left out
        "skipped": dict(skipped),
        "matches": {k: sorted({s.match for s in captioned if split_of[s.stroke_id] == k}) for k in SPLITS},
        "captions": {k: len(v) for k, v in captions.items()},
        "questions": {k: len(v) for k, v in qa.items()},
        "qa": qa_stats,
    }
    write_json(out / "manifest.json", manifest, indent=1)
    return manifest


def parse_window(text: str) -> tuple[int, int]:
    try:
        before, after = (int(x) for x in text.split(","))
    except ValueError:
        raise BuildError(f"--window: expected BEFORE,AFTER frames such as 7,8, got {text!r}") from None
    if before < 0 or after < 0:
        raise BuildError("--window: frame counts must be >= 0")
    return before, after


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.build_dataset",
        description="Build stroke clips, stage-1 captions and stage-2 questions from stroke annotations.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--annotations", nargs="+", required=True, metavar="CSV",
                   help="ShuttleSet set files / reference CSVs, or folders searched for set*.csv")
    p.add_argument("--videos", metavar="DIR",
                   help="match videos as DIR/<video>/setN.mp4 or DIR/<video>_setN.mp4; "
                        "without it only captions and questions are written")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--chunk", type=int, default=None,
                   help="strokes per question chunk (default 5, or 10 with --cot)")
    p.add_argument("--cot", action="store_true", help="chain-of-thought answers (captions, then the answer)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split and the question sampling")
    p.add_argument("--window", default="7,8", metavar="BEFORE,AFTER",
                   help="frames before and after the hit frame in each clip")
    p.add_argument("--splits", default="train=0.8,val=0.1,test=0.1",
                   help="match fractions per split, or 'annotations' to use the reference CSV's split column")
    p.add_argument("--val-matches", nargs="*", default=[], metavar="MATCH", help="matches for val (rest: train)")
    p.add_argument("--test-matches", nargs="*", default=[], metavar="MATCH", help="matches for test")
    p.add_argument("--val-to-train", type=float, default=0.0,
                   help="fraction of val question chunks moved to train (the reference system used 0.05)")
    p.add_argument("--overwrite", action="store_true", help="re-cut clips that already exist")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.chunk is not None and args.chunk < 1:
        p.error("--chunk must be >= 1")
    if not 0 <= args.val_to_train < 1:
        p.error("--val-to-train must be in [0, 1)")
    try:
        manifest = build(args)
    except (BuildError, AnnotationError) as err:
        p.exit(1, f"{p.prog}: error: {err}\n")
    log.info("captions %s, questions %s, skipped %s", manifest["captions"], manifest["questions"],
             manifest["skipped"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
