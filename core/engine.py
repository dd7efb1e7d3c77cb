"""The facade the app calls: holds the loaded stroke model and runs inference for the UI."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch

from core.config import GenerationSettings, ModelSettings
from core.loader import ModelLoadError, StrokeModel, build_model, load_model, read_manifest
from core.video import iter_windows

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo-model"


class Engine:
    """One loaded model at a time; calls from several browser tabs are serialised."""

    def __init__(self) -> None:
        self.model: StrokeModel | None = None
        self.source: str | None = None
        self._lock = threading.Lock()

    def load(self, model: str, precision: str = "fp32", device: str = "auto") -> str:
        """Load an adapter folder (with manifest.json) or a bare base checkpoint (id or folder)."""
        model = str(model).strip()
        if not model:
            raise ModelLoadError("give a model: an adapter folder, a base folder or a Hugging Face id")
        is_adapter = (Path(model) / "manifest.json").is_file()
        with self._lock:
            if is_adapter:
                read_manifest(model)
                loaded = load_model(model, precision=precision, device=device)
            else:
                loaded = build_model(ModelSettings(base=model, precision=precision, device=device))
            self.model, self.source = loaded, model
        log.info("loaded %s (%s on %s)", model, precision, loaded.device)
        return self.describe()

    def describe(self) -> str:
        if self.model is None:
            return "No model loaded."
        m = self.model
        lora = m.settings.lora
        parts = [f"Q-Former {'+'.join(lora.qformer_parts)} r={lora.qformer_r}" if lora.qformer_parts else "",
                 f"LLM {lora.llm_part} r={lora.llm_r}" if lora.llm_part else ""]
        return (f"{self.source} — base {m.settings.base}, stage {m.stage}, "
                f"LoRA: {', '.join(p for p in parts if p) or 'none'}; {m.settings.precision} on {m.device}; "
                f"{m.memory_bytes() / 2**20:.1f} MiB of weights")

    def caption(self, video: str | Path, hit_frames: list[int], batch_size: int = 8,
                settings: GenerationSettings | None = None) -> dict[int, str]:
        """A caption for the stroke at each hit frame, read in one pass over the video."""
        if self.model is None:
            raise ModelLoadError("no model is loaded")
        m, out = self.model, {}
        pending: list[tuple[int, object]] = []
        with self._lock, torch.inference_mode():
            for frame, clip in iter_windows(video, hit_frames):
                pending.append((frame, clip))
                if len(pending) == batch_size:
                    out.update(self._caption_batch(m, pending, settings))
                    pending = []
            if pending:
                out.update(self._caption_batch(m, pending, settings))
        return out

    @staticmethod
    def _caption_batch(m: StrokeModel, items, settings) -> dict[int, str]:
        batch = m.processor.caption_batch([clip for _, clip in items])
        batch = {k: v.to(m.device) for k, v in batch.items()}
        texts = m.processor.decode(m.vlm.generate(**batch, settings=settings))
        return {frame: text for (frame, _), text in zip(items, texts)}
