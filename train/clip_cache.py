"""Stroke clips of rendered (or real) match video held in memory as small uint8 arrays, and the
order in which training reads them (`ClipOrder`).

Training a small model on CPU is limited by decoding, not by the model: this cache cuts every
stroke's window once (one sequential pass per video), samples the model's frames, resizes them
to the model's input size and keeps them as uint8 (N, T, S, S, 3), with each stroke's labels.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.annotations import Stroke, load_shuttleset_set
from core.video import WINDOW_AFTER, WINDOW_BEFORE, iter_windows

log = logging.getLogger(__name__)


@dataclass
class ClipSet:
    frames: np.ndarray  # (N, T, S, S, 3) uint8 RGB
    strokes: list[Stroke] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.strokes)

    def subset(self, index: np.ndarray | list[int]) -> "ClipSet":
        index = np.asarray(index, dtype=int)
        return ClipSet(self.frames[index], [self.strokes[i] for i in index])

    @staticmethod
    def concat(parts: list["ClipSet"]) -> "ClipSet":
        parts = [p for p in parts if len(p)]
        return ClipSet(np.concatenate([p.frames for p in parts]), [s for p in parts for s in p.strokes])


def sample_frames(window: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """Evenly sampled frames of a window, each resized whole to size x size: (T, S, S, 3)."""
    pick = np.linspace(0, len(window) - 1, num_frames).round().astype(int)
    return np.stack([cv2.resize(window[i], (size, size), interpolation=cv2.INTER_AREA) for i in pick])


def cut_set(set_csv: str | Path, video: str | Path, num_frames: int, size: int,
            keep: Callable[[Stroke], bool] = lambda s: s.caption is not None) -> ClipSet:
    """The clips of every kept stroke of one set (strokes sharing a hit frame are dropped:
    their clips would be the same)."""
    strokes = [s for s in load_shuttleset_set(set_csv).strokes if keep(s)]
    counts: dict[int, int] = {}
    for s in strokes:
        counts[s.frame] = counts.get(s.frame, 0) + 1
    by_frame = {s.frame: s for s in strokes if counts[s.frame] == 1}
    out = np.empty((len(by_frame), num_frames, size, size, 3), np.uint8)
    kept = []
    for i, (frame, window) in enumerate(iter_windows(video, list(by_frame), WINDOW_BEFORE, WINDOW_AFTER)):
        out[i] = sample_frames(window, num_frames, size)
        kept.append(by_frame[frame])
    return ClipSet(out[: len(kept)], kept)


class ClipOrder:
    """The order in which training reads a clip set: epoch e is the (e+1)-th permutation drawn from
    a generator seeded with `seed`, cut into n // batch_size batches (the remaining clips wait for
    the next shuffle), each batch sorted. It follows from the epoch alone, so a resumed run reads
    the batches the interrupted one would have read."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.batches_per_epoch = max(1, n // batch_size)
        self._rng, self._drawn, self._order = np.random.default_rng(seed), 0, None

    def epoch(self, e: int) -> list[np.ndarray]:
        if e + 1 < self._drawn:  # an earlier epoch: draw again from the start
            self._rng, self._drawn = np.random.default_rng(self.seed), 0
        while self._drawn <= e:
            self._order, self._drawn = self._rng.permutation(self.n), self._drawn + 1
        b = self.batch_size
        return [np.sort(self._order[i * b:(i + 1) * b]) for i in range(self.batches_per_epoch)]
