"""Datasets and batches for both stages, read from a folder written by `python -m train.build_dataset`.

Stage 1 samples are single clips with their caption; stage 2 samples are chunks of clips with a
question and its answer. Clip paths in the JSON files are relative to the dataset folder.
Everything is checked before training starts (`load_captions`, `load_questions`), so that a
missing or malformed file or a missing clip is a DataError naming it, not a traceback mid-run.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from core.model import StrokeModel
from core.processor import ImageSpec, StrokeProcessor, clip_tensor, pad_chunks
from core.prompts import CAPTION_PROMPT, qa_prompt
from core.video import VideoError, read_clip

log = logging.getLogger(__name__)

CAPTION_KEYS = {"caption": str, "image": str, "image_id": str}
QA_KEYS = {"question_id": str, "image": list, "question": str, "answer": str, "is_impossible": bool}


class DataError(RuntimeError):
    """A dataset problem found before training; the message names the file and what is wrong."""


# ---------------------------------------------------------------- reading and checking the JSON files


def _read_list(data_dir: str | Path, name: str, keys: dict[str, type]) -> list[dict]:
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; build one with `python -m train.build_dataset`")
    path = root / name
    if not path.is_file():
        raise DataError(f"{path} is missing; is {root} a folder written by `python -m train.build_dataset`?")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a list of samples, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}: sample {i} is not an object")
        for key, kind in keys.items():
            if not isinstance(item.get(key), kind):
                raise DataError(f"{path}: sample {i} needs {key!r} ({kind.__name__}), got {item.get(key)!r}")
    return items


def check_clips(data_dir: str | Path, paths: list[str], what: str) -> None:
    """DataError if any clip file is missing (names the first few)."""
    root = Path(data_dir)
    missing = sorted({p for p in paths if not (root / p).is_file()})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{len(missing)} clip file(s) of {what} are missing under {root}: {shown}; "
                        "were the clips cut (build_dataset --videos)?")


def load_captions(data_dir: str | Path, split: str, check_files: bool = True) -> list[dict]:
    """Stage-1 samples of a split: [{"caption", "image", "image_id"}]."""
    items = _read_list(data_dir, f"{split}.json", CAPTION_KEYS)
    if check_files:
        check_clips(data_dir, [it["image"] for it in items], f"{split}.json")
    return items


def load_questions(data_dir: str | Path, split: str, check_files: bool = True, max_clips: int | None = None) -> list[dict]:
    """Stage-2 samples of a split (see train/qa.py for the fields)."""
    name = f"qa_{split}.json"
    items = _read_list(data_dir, name, QA_KEYS)
    for i, it in enumerate(items):
        if not it["image"] or not all(isinstance(p, str) for p in it["image"]):
            raise DataError(f"{Path(data_dir) / name}: sample {i} needs a non-empty list of clip paths in 'image'")
        if max_clips is not None and len(it["image"]) > max_clips:
            raise DataError(f"{Path(data_dir) / name}: sample {i} has {len(it['image'])} clips; "
                            f"the model takes at most {max_clips}")
    if check_files:
        check_clips(data_dir, [p for it in items for p in it["image"]], name)
    return items


def load_references(data_dir: str | Path, split: str, items: list[dict]) -> dict[str, list[str]]:
    """image_id -> reference captions: from the COCO-style `<split>_gt.json` if there is one, else the samples."""
    path = Path(data_dir) / f"{split}_gt.json"
    refs: dict[str, list[str]] = {}
    if path.is_file():
        try:
            for ann in json.loads(path.read_text(encoding="utf-8"))["annotations"]:
                refs.setdefault(str(ann["image_id"]), []).append(ann["caption"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a COCO caption reference file ({err})") from None
    for it in items:
        refs.setdefault(str(it["image_id"]), [it["caption"]])
    return refs


def is_chain_of_thought(items: list[dict]) -> bool:
    return any(it["answer"].lstrip().startswith("<thinking>") for it in items)


# ---------------------------------------------------------------- datasets


class ClipReader:
    """Clip file -> normalised tensor (T, 3, S, S); optionally kept in memory after the first read.

    A cached 16-frame 224 px clip takes 9.6 MB (float32): caching suits small datasets. With
    data-loader workers each worker keeps its own cache (workers persist across epochs)."""

    def __init__(self, root: str | Path, image: ImageSpec, num_frames: int, cache: bool = False):
        self.root, self.image, self.num_frames, self.cache = Path(root), image, num_frames, cache
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, rel: str) -> torch.Tensor:
        if rel in self._cache:
            return self._cache[rel]
        try:
            clip = clip_tensor(read_clip(self.root / rel), self.image, self.num_frames)
        except (VideoError, ValueError) as err:
            text = str(err)
            raise DataError(text if str(self.root / rel) in text else f"{self.root / rel}: {text}") from None
        if self.cache:
            self._cache[rel] = clip
        return clip


class ClipTokens:
    """Clip file -> the frozen encoder's query tokens (Q, Dq), computed once for every clip given.

    With the vision tower and Q-Former frozen (stage 2 without --train-qformer), a clip's tokens
    never change, while each chunk is read once per question (14 times): encoding every clip
    once up front makes an epoch many times faster. Tokens are computed in eval mode (no
    Q-Former dropout), as at inference, and kept on the CPU in the model's dtype."""

    def __init__(self, model: StrokeModel, reader: ClipReader, paths: list[str], batch_size: int = 64,
                 progress: bool = False):
        self._tokens: dict[str, torch.Tensor] = {}
        unique = list(dict.fromkeys(paths))
        for i in tqdm(range(0, len(unique), batch_size), desc="encode clips", unit="batch",
                      disable=not progress, leave=False):
            part = unique[i:i + batch_size]
            for rel, tokens in zip(part, model.encode(torch.stack([reader(p) for p in part])).cpu()):
                self._tokens[rel] = tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __call__(self, rel: str) -> torch.Tensor:
        return self._tokens[rel]


class _ItemDataset(Dataset):
    """The items of a dataset JSON file, with the reader of their clips."""

    def __init__(self, items: list[dict], clips: ClipReader):
        self.items, self.clips = items, clips

    def __len__(self) -> int:
        return len(self.items)


class CaptionDataset(_ItemDataset):
    """Stage 1: {"pixels": (T, 3, S, S), "target": caption, "id": image_id}."""

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        return {"pixels": self.clips(it["image"]), "target": it["caption"], "id": str(it["image_id"])}


class QADataset(_ItemDataset):
    """Stage 2: {"pixels": (K, T, 3, S, S) or, from ClipTokens, "tokens": (K, Q, Dq); "question",
    "target": answer, "id": question_id}."""

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        key = "tokens" if isinstance(self.clips, ClipTokens) else "pixels"
        return {key: torch.stack([self.clips(p) for p in it["image"]]), "question": it["question"],
                "target": it["answer"], "id": str(it["question_id"])}


class Collator:
    """Samples -> what StrokeVLM.forward takes, plus "ids" (sample ids, not a model input).

    Captions: pixel_values (B, T, 3, S, S). QA: pixel_values (B, K, T, 3, S, S), or clip_tokens
    (B, K, Q, Dq), padded to the longest chunk, and clip_mask (B, K). Labels are the targets'
    ids with padding -100."""

    def __init__(self, processor: StrokeProcessor, max_target_len: int, with_labels: bool = True):
        self.processor, self.max_target_len, self.with_labels = processor, max_target_len, with_labels

    def __call__(self, samples: list[dict]) -> dict:
        if "question" not in samples[0]:
            batch = {"pixel_values": torch.stack([s["pixels"] for s in samples]),
                     **self.processor.prompts([CAPTION_PROMPT] * len(samples))}
        else:
            key, name = ("tokens", "clip_tokens") if "tokens" in samples[0] else ("pixels", "pixel_values")
            clips = [s[key] for s in samples]
            padded, mask = pad_chunks(clips)
            texts = [qa_prompt(len(c), s["question"]) for c, s in zip(clips, samples)]
            batch = {name: padded, "clip_mask": mask, **self.processor.prompts(texts)}
        if self.with_labels:
            batch["labels"] = self.processor.labels([s["target"] for s in samples], self.max_target_len)
        batch["ids"] = [s["id"] for s in samples]
        return batch


def model_inputs(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a collated batch, on `device` (drops "ids")."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------- data order


class EpochBatchSampler(Sampler[list[int]]):
    """Deterministic batches: epoch e shuffles with seed + e, then this process takes every
    `world`-th sample (the order is padded by wrapping so every process gets as many batches).

    `set_epoch(e, skip)` starts epoch e after its first `skip` batches: a resumed run sees
    exactly the batches it would have seen, without reading the skipped ones."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1):
        if n < 1:
            raise DataError("no training samples")
        self.n, self.batch_size, self.seed, self.shuffle, self.rank, self.world = n, batch_size, seed, shuffle, rank, world
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(math.ceil(self.n / self.world) / self.batch_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self, epoch: int) -> list[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(self.n))
        per_rank = math.ceil(self.n / self.world)
        order = (order * self.world)[: per_rank * self.world]  # wrap so the share is equal
        mine = order[self.rank::self.world]
        return [mine[i:i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    def __iter__(self):
        yield from self.batches(self.epoch)[self.skip:]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip
