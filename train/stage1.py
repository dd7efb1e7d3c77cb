"""Stage 1 recipe: single-stroke captioning with LoRA on the Q-Former.

    python -m train.stage1 --base Salesforce/instructblip-flan-t5-xl --data data/badminton --out runs/stage1 --experiment 1
    python -m train.stage1 --config train/configs/stage1.yaml --lr 1e-4 --epochs 2
    accelerate launch -m train.stage1 --config train/configs/stage1.yaml      # several GPUs
    python -m train.stage1 --tiny --data data/demo --out runs/smoke --max-steps 2   # smoke run
    python -m train.stage1 --init assets/demo-model --data workspace/data/my-match --out runs/mine   # fine-tune

The vision tower and the LLM stay frozen; the Q-Former LoRA (the README's experiment presets
1..4, or explicit --qformer-parts/--qformer-r) and the frame-position embedding train. The
best checkpoint (best/) is chosen by CIDEr-D on val, ties broken by the mean field accuracy.
"""
from __future__ import annotations

import logging
import sys

from core.config import ModelSettings
from core.loader import build_model, load_model
from core.lora import set_trainable
from core.tiny import build_tiny_base
from train.config import ConfigError, Stage1Config
from train.data import CaptionDataset, ClipReader, DataError, load_captions, load_references
from train.evaluate import adapter_dir, evaluate_captions, generation_settings
from train.loop import Trainer, run_cli, start_run, write_config

log = logging.getLogger(__name__)

PROG = "python -m train.stage1"
DESCRIPTION = "Stage 1: train the stroke captioner (Q-Former LoRA + frame embedding)."
TINY_BASE = "tiny-base"
NEW_PARAMS = ("frame_embed",)


def resolve_base(cfg: Stage1Config, run_dir, acc) -> str:
    """--base as given, or with --tiny a tiny random base built once into the run folder."""
    if cfg.base:
        return cfg.base
    if not cfg.tiny:
        raise ConfigError("give the base model with --base HF_ID_OR_FOLDER (or --tiny for a smoke run)")
    folder = run_dir / TINY_BASE
    with acc.main_process_first():
        if not (folder / "config.json").is_file() and acc.is_main_process:
            log.info("building a tiny random base in %s", folder)
            build_tiny_base(folder)
    return str(folder)


def setup(cfg: Stage1Config) -> Trainer:
    """Everything is checked (output folder, data, clips, base) before the model is trained."""
    run_dir, acc, device = start_run(cfg)
    train_items = load_captions(cfg.data, "train")
    val_items = load_captions(cfg.data, "val")
    if not train_items:
        raise DataError(f"{cfg.data}/train.json has no samples")
    if cfg.init:  # fine-tuning a model's captioner: its base, frame count and LoRA layout
        model = load_model(adapter_dir(cfg.init), precision=cfg.precision, device=device, stage1=True)
        if cfg.num_frames != model.settings.num_frames:
            log.info("frames per clip: %d, the --init model's (not %d)", model.settings.num_frames, cfg.num_frames)
            cfg.num_frames = model.settings.num_frames
        model.stage = 1
    write_config(cfg, run_dir, acc)
    if not cfg.init:
        settings = ModelSettings(base=resolve_base(cfg, run_dir, acc), num_frames=cfg.num_frames,
                                 precision=cfg.precision, device=device, lora=cfg.lora_settings())
        model = build_model(settings, stage=1)
    trainable = set_trainable(model.vlm, model.settings.lora, NEW_PARAMS)
    clips = ClipReader(cfg.data, model.processor.image, cfg.num_frames, cfg.cache_clips)
    val_items = val_items[: cfg.eval_limit] if cfg.eval_limit else val_items
    refs = load_references(cfg.data, "val", val_items)
    gen = generation_settings(1, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                              min_new_tokens=cfg.min_new_tokens)

    def evaluate(m):
        return evaluate_captions(m, val_items, refs, gen, cfg.eval_batch_size or cfg.batch_size, cache=clips)["metrics"]

    return Trainer(cfg, model, trainable, CaptionDataset(train_items, clips), evaluate if val_items else None,
                   acc, run_dir)


def train(cfg: Stage1Config) -> dict:
    return setup(cfg).fit()


def main(argv: list[str] | None = None) -> int:
    return run_cli(Stage1Config, argv, PROG, DESCRIPTION, train, "cider", "CIDEr", stage=1)


if __name__ == "__main__":
    sys.exit(main())
