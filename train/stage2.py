"""Stage 2 recipe: multi-stroke question answering (temporal grounding) with LoRA on the LLM,
starting from a stage-1 run.

    python -m train.stage2 --init runs/stage1 --data data/badminton --out runs/stage2
    python -m train.stage2 --config train/configs/stage2.yaml --llm-part attn --train-qformer
    accelerate launch -m train.stage2 --config train/configs/stage2.yaml     # several GPUs

The stage-1 adapters (--init: a run folder, whose best/ is used, or an adapter folder) are
loaded onto their base (or --base), an LLM LoRA ("all" = q, v, wi, wo; "attn"; "ffn") is added,
and the saved manifest records both parts. The clip-segment embedding trains, clips 1.. starting
from orthogonal tags (--tag-clips: stage 1 sees one clip, so they are still at zero); the Q-Former
LoRA and the frame embedding stay frozen unless --train-qformer, and while they are frozen every
clip is encoded once before training (--encode-once) instead of once per question; --negative-share
repeats the impossible training questions up to a share of the training set. The best checkpoint is
chosen by the index-set F1 on val, ties broken by the "does not occur" accuracy.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace

import torch

from core.loader import load_model, read_manifest
from core.lora import attach_lora, set_trainable
from train.config import ConfigError, Stage2Config
from train.data import ClipReader, ClipTokens, DataError, QADataset, is_chain_of_thought, load_questions
from train.evaluate import adapter_dir, evaluate_questions, generation_settings
from train.loop import Trainer, checkpoints, run_cli, start_run, write_config
from train.qa import oversample_impossible

log = logging.getLogger(__name__)

PROG = "python -m train.stage2"
TAG_SAMPLE = 64  # clips whose projected tokens set the tag length
DESCRIPTION = "Stage 2: train stroke question answering (LLM LoRA + clip embedding) from a stage-1 run."


def load_init(cfg: Stage2Config, device: str):
    """The model to train: a stage-1 captioner with a new LLM LoRA attached (cfg's), or a stage-2
    model whose own LLM LoRA trains on (fine-tuning it on new questions; cfg's LLM LoRA fields are
    set to its, so config.yaml says what trained). model.settings.lora describes both LoRAs."""
    if not cfg.init:
        raise ConfigError("give the stage-1 run with --init RUN_DIR (its best/ adapters are used)")
    if cfg.tiny:
        raise ConfigError("--tiny is for stage 1; stage 2 takes its base from the --init adapters")
    init = adapter_dir(cfg.init)
    manifest = read_manifest(init)
    model = load_model(init, base=cfg.base, precision=cfg.precision, device=device)
    own = manifest["lora"]
    if own.get("llm_part"):
        cfg.llm_part, cfg.llm_r, cfg.llm_alpha = own["llm_part"], own["llm_r"], own["llm_alpha"]
        model.settings.lora = replace(model.settings.lora, train_qformer=cfg.train_qformer, train_llm=True)
        log.info("stage 2 on from %s (stage %s): its LLM LoRA trains on, %s", init, manifest.get("stage"),
                 model.settings.lora)
    else:
        llm = cfg.lora_llm()
        attach_lora(model.vlm, llm)
        model.settings.lora = replace(model.settings.lora, llm_part=llm.llm_part, llm_r=llm.llm_r,
                                      llm_alpha=llm.llm_alpha, train_qformer=cfg.train_qformer, train_llm=True)
        log.info("stage 2 from %s (stage %s): LoRA %s", init, manifest.get("stage"), model.settings.lora)
    model.stage = 2
    return model


@torch.no_grad()
def tag_clips(model, clips, paths: list[str], seed: int) -> float | None:
    """Orthogonal clip-segment tags for clips 1.., as long as a projected query token of `paths`.

    The tags tell the LLM which clip a token came from (T5 has no absolute positions). Stage 1
    feeds one clip, so tags 1.. are still at their zero start, and from zero stage 2 has to grow
    them before the LLM can tell its clips apart. Clip 0 keeps its tag (a single clip reads as
    before). Returns the norm used, None where tags 1.. are already non-zero (a base that
    carries trained clip tags keeps them)."""
    vlm = model.vlm
    if vlm.clip_embed[1:].abs().max() > 0:
        return None
    encoded = clips if isinstance(clips, ClipTokens) else ClipTokens(model, clips, paths)
    return vlm.orthogonal_clip_tags(torch.stack([encoded(p) for p in paths]).to(model.device), seed)


def tag_sample(items: list[dict], count: int = TAG_SAMPLE) -> list[str]:
    """The first `count` distinct clips of the questions (a chunk's questions share its clips)."""
    sample: dict[str, None] = {}
    for it in items:
        sample.update(dict.fromkeys(it["image"]))
        if len(sample) >= count:
            break
    return list(sample)[:count]


def setup(cfg: Stage2Config) -> Trainer:
    run_dir, acc, device = start_run(cfg)
    train_items = load_questions(cfg.data, "train")
    val_items = load_questions(cfg.data, "val")
    if not train_items:
        raise DataError(f"{cfg.data}/qa_train.json has no samples")
    if cfg.negative_share:
        given = len(train_items)
        train_items = oversample_impossible(train_items, cfg.negative_share, cfg.seed)
        log.info("impossible questions repeated to %.0f %% of training: %d -> %d questions",
                 100 * cfg.negative_share, given, len(train_items))
    cfg.resolve_generation(is_chain_of_thought(train_items))
    model = load_init(cfg, device)
    for name, items in (("train", train_items), ("val", val_items)):
        longest = max((len(it["image"]) for it in items), default=0)
        if longest > model.settings.max_clips:
            raise DataError(f"qa_{name}.json has chunks of {longest} clips; the model takes at most "
                            f"{model.settings.max_clips}")
    cfg.num_frames = model.settings.num_frames  # the stage-1 model's, recorded in config.yaml
    write_config(cfg, run_dir, acc)
    new_params = ("clip_embed",) + (("frame_embed",) if cfg.train_qformer else ())
    trainable = set_trainable(model.vlm, model.settings.lora, new_params)
    clips = ClipReader(cfg.data, model.processor.image, model.settings.num_frames, cfg.cache_clips)
    val_items = val_items[: cfg.eval_limit] if cfg.eval_limit else val_items
    if cfg.encode_once and not cfg.train_qformer:
        paths = [p for it in (*train_items, *val_items) for p in it["image"]]
        clips = ClipTokens(model, clips, paths, cfg.eval_batch_size or 4 * cfg.batch_size,
                           cfg.progress and acc.is_main_process)
        log.info("encoded %d clips once (the Q-Former is frozen)", len(clips))
    if cfg.tag_clips and cfg.resume and checkpoints(run_dir):
        log.info("clip tags 1..: from the checkpoint")  # Trainer.resume loads them with the adapters
    elif cfg.tag_clips:
        norm = tag_clips(model, clips, tag_sample(train_items), cfg.seed)
        log.info("clip tags 1..: %s", "kept (already trained)" if norm is None else f"orthogonal, norm {norm:.3f}")
    gen = generation_settings(2, cfg.cot, cfg.num_beams, cfg.max_new_tokens, cfg.min_new_tokens)

    def evaluate(m):
        return evaluate_questions(m, val_items, gen, cfg.eval_batch_size or cfg.batch_size, cache=clips)["metrics"]

    return Trainer(cfg, model, trainable, QADataset(train_items, clips), evaluate if val_items else None,
                   acc, run_dir)


def train(cfg: Stage2Config) -> dict:
    return setup(cfg).fit()


def main(argv: list[str] | None = None) -> int:
    return run_cli(Stage2Config, argv, PROG, DESCRIPTION, train, "f1", "F1", stage=2)


if __name__ == "__main__":
    sys.exit(main())
