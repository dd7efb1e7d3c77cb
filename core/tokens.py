"""The token cache: every stroke's query tokens on disk, keyed by the video's content and by
the weights that shape the tokens, so that a question or a re-index never runs the vision twice.

Layout: `<db>.tokens/<video hash>/<encoder key>/<frame>.npy`, float32 (Q, D), written to a
temporary name and renamed. The video hash is the SHA-256 of the file's bytes; the encoder key
hashes the base model's identity and architecture, the frame count and the weights that shape the
tokens (Q-Former LoRA, frame embedding), so a model whose stage 2 left the Q-Former alone shares the
tokens of its stage 1. The model key (what a caption depends on) adds the LLM's LoRA and the clip
embedding.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


class TokenCache:
    """Query tokens of one video under one encoder: <frame>.npy files, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def of(cls, root: Path, video_hash: str, enc_key: str) -> "TokenCache":
        return cls(root / video_hash[:24] / enc_key[:24])

    def file(self, frame: int) -> Path:
        return self.folder / f"{int(frame)}.npy"

    def has(self, frame: int) -> bool:
        return self.file(frame).is_file()

    def put(self, frame: int, tokens: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{int(frame)}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(tokens, dtype=np.float32))
        os.replace(tmp, self.file(frame))

    def get(self, frame: int) -> np.ndarray:
        return np.load(self.file(frame))


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _digest(parts: dict, tensors: dict | None = None) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for name in sorted(tensors or {}):
        t = tensors[name]
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _identity(model) -> dict:
    from core.loader import base_signature

    s = model.settings
    return {"base": str(s.base), "signature": base_signature(model.vlm.base.config), "frames": s.num_frames,
            "image": [model.processor.image.size, list(model.processor.image.mean), list(model.processor.image.std)]}


def encoder_key(model) -> str:
    """Everything the query tokens depend on: base, frames, image settings, Q-Former LoRA, frame embedding."""
    from core.lora import adapter_state_dict

    state = {k: v for k, v in adapter_state_dict(model.vlm).items() if k.startswith("qformer.") or k == "frame_embed"}
    return _digest({**_identity(model), "qformer_lora": model.settings.lora.qformer_parts}, state)


def model_key(model) -> str:
    """Everything a caption depends on: the encoder plus the LLM's LoRA and the clip embedding."""
    from core.lora import adapter_state_dict

    return _digest({**_identity(model), "lora": model.settings.lora.to_dict()}, adapter_state_dict(model.vlm))
