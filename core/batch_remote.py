"""What core.batch runs on the Ray cluster: decoding on CPU workers, the model in actors.

`cut_batches` (a task, one CPU) decodes one set's video in one sequential pass
(core.video.iter_windows), turns each stroke window into the model's pixels (core.processor, the
model's own image settings) and yields them `batch_size` at a time in frame order: the batches
core.indexer.model_pass encodes, so the tokens come out the same. `StrokeWorker` (an actor,
`num_gpus` of its own where the cluster has GPUs) loads the model once, then encodes batches and
captions tokens. Neither touches the index: tokens and captions go back to the one writer.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import ray

from core.config import GenerationSettings
from core.processor import ImageSpec, clip_tensor
from core.video import iter_windows


@ray.remote(num_cpus=1)
def cut_batches(video: str, frames: list[int], image: ImageSpec, num_frames: int,
                batch_size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """(hit frames, pixels (B, T, 3, S, S) float32) of every `batch_size` strokes, in frame order."""
    hits: list[int] = []
    clips: list[np.ndarray] = []
    for frame, window in iter_windows(video, frames):
        hits.append(frame)
        clips.append(clip_tensor(window, image, num_frames).numpy())
        if len(clips) == batch_size:
            yield hits, np.stack(clips)
            hits, clips = [], []
    if clips:
        yield hits, np.stack(clips)


@ray.remote
class StrokeWorker:
    """The stroke model on one worker. A model that cannot be loaded is reported by `describe`
    (its message), not raised, so that the command can say why in one line."""

    def __init__(self, model_dir: str, precision: str, threads: int | None):
        from core.device import set_threads
        from core.loader import ModelLoadError, load_model

        set_threads(threads)
        self.model, self.error = None, None
        try:
            self.model = load_model(model_dir, precision=precision)
        except ModelLoadError as err:
            self.error = str(err)

    def describe(self) -> dict:
        """{'error'} or what the driver plans with: the cache keys and the image settings."""
        if self.model is None:
            return {"error": self.error}
        from core.tokens import encoder_key, model_key

        m = self.model
        return {"keys": (encoder_key(m), model_key(m)), "image": m.processor.image,
                "num_frames": m.processor.num_frames, "device": str(m.device)}

    def encode(self, batch: tuple[list[int], np.ndarray]) -> tuple[list[int], np.ndarray]:
        """(frames, pixels) -> (frames, query tokens (B, Q, D) float32)."""
        import torch

        frames, pixels = batch  # read-only views of Ray's object store: torch gets a copy
        return frames, self.model.encode(torch.from_numpy(pixels.copy())).float().cpu().numpy()

    def caption(self, tokens: np.ndarray, settings: GenerationSettings | None, batch_size: int) -> list[str]:
        import torch

        return self.model.caption(torch.from_numpy(tokens.copy()), settings, batch_size=batch_size)
