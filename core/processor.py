"""Turn stroke clips and text into model inputs, and generated ids back into text.

Frames follow the base checkpoint's image processor settings (preprocessor_config.json):
sample N frames evenly over the window, resize the short side to size*256/224 and centre-crop
to size (as the reference's video processor), or, where the config sets
`"do_center_crop": false`, resize the whole frame to size x size so nothing of the court is
cut; then scale to [0, 1] and normalise with the checkpoint's mean and std.

A base trained from scratch on small clips can ask for motion channels instead of colour
(`"stroke_motion_channels": true`): each frame becomes (grey, grey - previous grey, next grey -
grey) over the sampled frames. The vision tower sees one frame at a time; with these channels its
patch embedding sees what moved (the shuttle, a swing) rather than only what is there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from core.prompts import CAPTION_PROMPT, qa_prompt

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # InstructBLIP's processor defaults
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MOTION_MEAN = (0.45, 0.0, 0.0)  # grey, then two frame differences centred on zero
MOTION_STD = (0.27, 0.05, 0.05)  # differences are small and sparse: scale them up


@dataclass(frozen=True)
class ImageSpec:
    size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    crop: bool = True
    motion: bool = False

    @classmethod
    def motion_channels(cls, size: int, crop: bool = False) -> "ImageSpec":
        return cls(size, MOTION_MEAN, MOTION_STD, crop, motion=True)

    @classmethod
    def from_file(cls, path: str | Path) -> "ImageSpec":
        """Read a Hugging Face preprocessor_config.json (BlipImageProcessor layout)."""
        cfg = json.loads(Path(path).read_text())
        size = cfg.get("size", 224)
        size = size.get("height", size.get("shortest_edge", 224)) if isinstance(size, dict) else size
        return cls(int(size), tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD)),
                   bool(cfg.get("do_center_crop", True)), bool(cfg.get("stroke_motion_channels", False)))

    def to_dict(self) -> dict:
        return {"image_processor_type": "BlipImageProcessor", "do_resize": True, "do_normalize": True,
                "do_rescale": True, "rescale_factor": 1 / 255, "do_convert_rgb": True,
                "do_center_crop": self.crop,
                "size": {"height": self.size, "width": self.size},
                "image_mean": list(self.mean), "image_std": list(self.std), "resample": 3,
                "stroke_motion_channels": self.motion}

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """Sampled, resized uint8 RGB frames (..., T, S, S, 3) -> normalised float32 (..., T, 3, S, S)."""
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        if not self.motion:
            x = np.moveaxis(frames, -1, -3).astype(np.float32, order="C") * np.float32(1 / 255)
            return (x - mean[:, None, None]) / std[:, None, None]
        # OpenCV's grey (0.299 R + 0.587 G + 0.114 B, as uint8) of all frames stacked as one image, and
        # every channel written normalised in place: training time on CPU goes here
        flat = np.ascontiguousarray(frames).reshape(-1, frames.shape[-2], 3)
        grey = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(frames.shape[:-1]).astype(np.float32)
        grey *= np.float32(1 / 255)  # (..., T, S, S)
        x = np.empty(grey.shape[:-2] + (3,) + grey.shape[-2:], np.float32)
        np.subtract(grey, mean[0], out=x[..., 0, :, :])
        x[..., 0, :, :] *= 1 / std[0]
        moved = x[..., 1:, 1, :, :]  # frame t minus frame t-1
        np.subtract(grey[..., 1:, :, :], grey[..., :-1, :, :], out=moved)
        np.multiply(moved, 1 / std[2], out=x[..., :-1, 2, :, :])  # frame t+1 minus frame t
        x[..., :-1, 2, :, :] -= mean[2] / std[2]
        moved -= mean[1]
        moved *= 1 / std[1]
        x[..., 0, 1, :, :] = -mean[1] / std[1]  # clip edges have no neighbour: no motion
        x[..., -1, 2, :, :] = -mean[2] / std[2]
        return x


def clip_tensor(frames: np.ndarray, spec: ImageSpec, num_frames: int) -> torch.Tensor:
    """uint8 RGB frames (T, H, W, 3) -> normalised float tensor (num_frames, 3, size, size)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    pick = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    h, w = frames.shape[1:3]
    if spec.crop:
        short = max(spec.size, round(spec.size * 256 / 224))
        scale = short / min(h, w)
        nh, nw = max(short, round(h * scale)), max(short, round(w * scale))
    else:
        nh = nw = spec.size
    top, left = (nh - spec.size) // 2, (nw - spec.size) // 2
    out = np.empty((num_frames, spec.size, spec.size, 3), np.uint8)
    for i, f in enumerate(pick):
        resized = cv2.resize(frames[f], (nw, nh), interpolation=cv2.INTER_AREA)
        out[i] = resized[top:top + spec.size, left:left + spec.size]
    return torch.from_numpy(spec.normalise(out))


class StrokeProcessor:
    """Batches for captioning (one clip per sample) and for QA over a chunk of clips."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image: ImageSpec, num_frames: int, max_clips: int):
        self.tokenizer, self.image, self.num_frames, self.max_clips = tokenizer, image, num_frames, max_clips

    def clips(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Clips -> pixel values (N, T, 3, S, S)."""
        return torch.stack([clip_tensor(c, self.image, self.num_frames) for c in clips])

    def prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}

    def labels(self, texts: list[str], max_length: int = 256) -> torch.Tensor:
        """Target ids with padding set to -100 (ignored by the loss)."""
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return enc.input_ids.masked_fill(enc.attention_mask == 0, -100)

    def caption_batch(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.clips(clips), **self.prompts([CAPTION_PROMPT] * len(clips))}

    def qa_batch(self, chunks: list[list[np.ndarray]], questions: list[str]) -> dict[str, torch.Tensor]:
        """Chunks of 1..max_clips clips, padded to the longest chunk, with a clip mask."""
        if len(chunks) != len(questions):
            raise ValueError("one question per chunk")
        k = max(len(c) for c in chunks)
        if not 1 <= k <= self.max_clips or any(not c for c in chunks):
            raise ValueError(f"each chunk needs 1..{self.max_clips} clips")
        pixels, mask = pad_chunks([self.clips(chunk) for chunk in chunks])
        texts = [qa_prompt(len(c), q) for c, q in zip(chunks, questions)]
        return {"pixel_values": pixels, "clip_mask": mask, **self.prompts(texts)}

    def decode(self, ids: torch.Tensor) -> list[str]:
        # Keep the chain-of-thought tags: answers are parsed from <answer>...</answer>.
        keep = {t for t in ("<thinking>", "</thinking>", "<answer>", "</answer>") if t in self.tokenizer.get_vocab()}
        drop = set(self.tokenizer.all_special_tokens) - keep
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=False)
        for tok in drop:
            texts = [t.replace(tok, " ") for t in texts]
        return [" ".join(t.split()) for t in texts]


def pad_chunks(chunks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunks of K_i clips (K_i, ...) -> one batch (B, max K_i, ...) padded with zeros, and the clip
    mask (B, max K_i) that marks the real clips: what StrokeVLM and StrokeModel.answer take."""
    k = max(len(c) for c in chunks)
    padded = chunks[0].new_zeros(len(chunks), k, *chunks[0].shape[1:])
    mask = torch.zeros(len(chunks), k, dtype=torch.bool, device=chunks[0].device)
    for i, c in enumerate(chunks):
        padded[i, : len(c)] = c
        mask[i, : len(c)] = True
    return padded, mask
