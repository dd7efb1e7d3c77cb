"""Base pretraining for a tiny stroke model: turns a random tiny InstructBLIP (core.tiny) into a
base that already sees strokes, saved in the Hugging Face folder format of the real base.

    python -m train.pretrain_base --renders renders/train --heldout renders/heldout --out runs/base
    python -m train.pretrain_base --init runs/base --steps-a 0 --steps-b 0 --minutes-c 8 \
        --renders renders/train --heldout renders/heldout --out runs/base-more-c   # continue a base
    python -m train.pretrain_base --resume --renders ... --out runs/base   # continue an interrupted run

A tiny model has no pretrained base, while the stage-1/2 recipes assume one (frozen vision tower
and LLM, LoRA only). This recipe supplies it in three phases on rendered stroke clips:
  A. supervised stroke heads: the vision tower, Q-Former, query tokens and frame embedding
     train with three linear heads (side, stroke type, zone) on the mean of the query outputs;
  B. full captioning: everything trains (vision, Q-Former, projection, T5) with the LM loss on
     the stroke captions under the stage-1 prompt; `--heads-b W` keeps phase A's heads on as an
     auxiliary loss of weight W (they hold the tower's features while the random T5 learns to read them);
  C. instruction tuning, as InstructBLIP's base was tuned on question answering: the vision tower
     and Q-Former are frozen and every clip is encoded once; the T5 (all of it) and the clip
     tags train on stage-2 questions about rally chunks of 5 (train.qa's templates and answers,
     drawn afresh for every batch from any training rally, `--negatives` of them about an absent
     event), mixed with single-clip captions (`--caption-share`).
Phases A and B see grey + frame-difference channels (`--motion`, core.processor: fed colour, the
per-frame tower did not leave the majority class) and clips shifted by up to `--shift` px (phase
C reads the unshifted clips' tokens); each phase's learning rate decays over its step or minute
budget, whichever ends first.
Each phase runs through the stage recipes' loop (train.loop.Loop: AdamW with weight decay 0.01,
gradient norm clipped to 1.0) with its own loss, parameters, data and scores, on `--device`
(auto: the GPU when there is one). Every `--save-every` steps and at its end a phase writes a
checkpoint (`checkpoints/<phase>/step-N/`: all weights, optimizer, random states); `--resume` with
the same options continues at the exact step of the phase that was interrupted. The checkpoints
are removed once the base is written.
The heads are thrown away; the base folder gets the model, both tokenizers (a corpus covering
the captions, QA templates and prompts), `preprocessor_config.json` with `"do_center_crop":
false` (the whole court stays visible) and `"stroke_motion_channels": true`,
`generation_config.json` with the word-level tokenizer's shortest caption, and
`stroke_embeddings.safetensors` (the learned frame embedding and clip tags, read by core.loader.build_model).
`metrics.jsonl` logs the loss and, at every evaluation, the field accuracy (phase A: heads; phase
B: greedy captions parsed back; phase C: index-set F1 and "does not occur" accuracy of greedy
answers to fixed questions) on the held-out clips and on a fixed sample of training clips: their
gap tells overfitting from underfitting.

--renders / --heldout are folders in the ShuttleSet layout (`<video>/setN.csv` + `setN.mp4`, as
train/replay.py writes them); clips are cut once into memory (train/clip_cache.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from core.config import GenerationSettings, ModelSettings
from core.device import resolve_device
from core.loader import STROKE_EMBEDDINGS, TUBELET, build_model, save_stroke_embeddings
from core.processor import ImageSpec, pad_chunks
from core.prompts import CAPTION_PROMPT, QA_PROMPT, QFORMER_INSTRUCTION, qa_prompt
from core.tiny import TinySpec, build_tiny_base, default_corpus
from core.vocab import SIDES, STROKES, ZONE_PHRASES, caption
from train.clip_cache import ClipOrder, ClipSet, cut_set
from train.data import model_inputs
from train.loop import METRICS, Loop, Plan, TrainError, adamw, checkpoints
from train.metrics import grounding_metrics, parse_caption
from train.qa import (CHUNK, NEGATIVES_PER_CHUNK, POSITIVES_PER_CHUNK, TEMPLATES, chunk_questions, draw_question,
                      rally_chunks)

log = logging.getLogger(__name__)

ZONES = tuple(sorted(ZONE_PHRASES))
FIELDS = {"side": SIDES, "stroke": STROKES, "zone": ZONES}
WEIGHTS = "weights.pt"  # a phase checkpoint's model and head weights
LOG_EVERY = 25
GREEDY = GenerationSettings(num_beams=1, max_new_tokens=16, min_new_tokens=1)  # the scores' decoding


def demo_spec() -> TinySpec:
    """The demo model's size: 112 px frames, patch 16, width 64 everywhere, 8 query tokens."""
    return TinySpec(image_size=112, patch_size=16, vision_hidden=64, vision_layers=2, qformer_hidden=64,
                    qformer_layers=2, num_query_tokens=8, llm_width=64, llm_layers=2, llm_heads=4, llm_ffn=128)


@dataclass
class PretrainConfig:
    spec: TinySpec = field(default_factory=demo_spec)  # unused with `init`: that base keeps its own sizes
    init: str | None = None  # continue from this base folder instead of a random one
    num_frames: int = 8
    motion: bool = True  # grey + frame-difference channels (core.processor.ImageSpec.motion)
    tubelet: int = 0  # frames of a tubelet embedding in the vision tower (core.model.StrokeVLM; 0: none)
    batch_size: int = 32
    lr_a: float = 2e-3
    lr_b: float = 1e-3
    warmup: int = 100
    steps_a: int = 2000  # upper bounds; the minutes end a phase earlier
    steps_b: int = 2000
    minutes_a: float = 6.0
    minutes_b: float = 6.0
    lr_c: float = 1e-3
    steps_c: int = 2000
    minutes_c: float = 4.0  # includes encoding every training clip once
    caption_share: float = 0.25  # phase C batches of single-clip captions (the base stays a captioner)
    negatives: float = 0.45  # phase C questions about an event absent from the chunk (the reference mix: 4 of 14)
    heads_b: float = 0.0  # weight of phase A's head loss during phase B (0: the LM loss alone)
    shift: int = 6  # augmentation: clips move by up to this many pixels
    eval_every: int = 200
    eval_limit: int = 512
    seed: int = 0
    save_every: int = 200  # a phase checkpoint every N steps (and at the phase's end)
    keep_checkpoints: int = 1  # the newest N of each phase (0: all)
    resume: bool = False  # continue each phase from its newest checkpoint in the output folder
    device: str = "auto"  # auto, cpu, cuda or cuda:N (core.device.resolve_device)


# Options a resumed run may change; any other must be the interrupted run's.
RESUME_FREE = ("resume", "device", "save_every", "keep_checkpoints")
OPTION_HELP = {"save_every": "write a phase checkpoint every N steps (and at the phase's end)",
               "keep_checkpoints": "keep the newest N checkpoints of each phase (0: all); all are removed once "
                                   "the base is written",
               "device": "auto (the GPU when there is one), cpu, cuda or cuda:N",
               "tubelet": "frames of a tubelet embedding (a Conv3d over neighbouring frames beside the patch "
                          "embedding; 0: none)"}


def tokenizer_corpus() -> list[str]:
    """Every word of the prompts, captions and QA templates, so none falls back to characters."""
    captions = [caption(s, t, z) for s in SIDES for t in STROKES for z in ZONES]
    templates = [t for kind in TEMPLATES.values() for t in kind]
    return [*default_corpus(), CAPTION_PROMPT, QA_PROMPT, QFORMER_INSTRUCTION, *captions, *templates]


def make_base(folder: str | Path, spec: TinySpec, seed: int = 0, motion: bool = True, tubelet: int = 0) -> Path:
    """A random tiny base whose processor resizes the whole frame (no centre crop); with `tubelet`,
    a zero tubelet embedding of that many frames beside it (the loader builds the Conv3d from it)."""
    folder = build_tiny_base(folder, spec, tokenizer_corpus(), seed)
    image = ImageSpec.motion_channels(spec.image_size) if motion else ImageSpec(size=spec.image_size, crop=False)
    (folder / "preprocessor_config.json").write_text(json.dumps(image.to_dict(), indent=2))
    if tubelet:
        weight = torch.zeros(spec.vision_hidden, 3, tubelet, spec.patch_size, spec.patch_size)
        save_file({TUBELET: weight}, str(folder / STROKE_EMBEDDINGS))
    return folder


def labels(clips: ClipSet) -> dict[str, torch.Tensor]:
    return {name: torch.tensor([values.index(getattr(s, name)) for s in clips.strokes]) for name, values in FIELDS.items()}


def augment(frames: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Training clips (B, T, S, S, 3), each moved by up to `shift` px (edges repeated). Every set is
    rendered from one camera, so without this the tower can learn a set's framing. (Mirroring,
    with zones swapping sides, was measured too: it helped side and type but cost zone.)"""
    if not shift:
        return frames
    b, _, size = frames.shape[:3]
    padded = np.pad(frames, ((0, 0), (0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * shift + 1, (2, b))
    return np.stack([padded[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(b)])


def pixels(frames: np.ndarray, spec: ImageSpec) -> torch.Tensor:
    """uint8 clips (B, T, S, S, 3) already at the model's size -> normalised (B, T, 3, S, S)."""
    return torch.from_numpy(spec.normalise(frames))


class StrokeHeads(nn.Module):
    """Side / stroke / zone logits from the mean of a clip's query outputs (phase A only)."""

    def __init__(self, width: int):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(width, len(values)) for name, values in FIELDS.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = tokens.mean(dim=1)
        return {name: head(pooled) for name, head in self.heads.items()}


def warmup_cosine(step: int, warmup: int, done: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay over the fraction `done` of the phase."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


@torch.no_grad()
def head_accuracy(model, heads: StrokeHeads, clips: ClipSet, batch: int = 64) -> dict[str, float]:
    gold = labels(clips)
    right = {k: 0 for k in FIELDS}
    for i in range(0, len(clips), batch):
        out = heads(model.encode(pixels(clips.frames[i:i + batch], model.processor.image)))
        for k in FIELDS:
            right[k] += int((out[k].argmax(-1).cpu() == gold[k][i:i + batch]).sum())
    return {k: right[k] / max(1, len(clips)) for k in FIELDS}


def caption_accuracy(model, clips: ClipSet, batch: int = 64) -> dict[str, float]:
    """Greedy captions parsed back into fields; unreadable counts as wrong."""
    right = {k: 0 for k in FIELDS}
    for i in range(0, len(clips), batch):
        tokens = model.encode(pixels(clips.frames[i:i + batch], model.processor.image))
        for s, text in zip(clips.strokes[i:i + batch], model.caption(tokens, GREEDY, batch_size=batch)):
            got = parse_caption(text)
            for k in FIELDS:
                right[k] += int(getattr(got, k, None) == getattr(s, k))
    return {k: right[k] / max(1, len(clips)) for k in FIELDS}


def encode_all(model, clips: ClipSet, batch: int = 256) -> torch.Tensor:
    """Every clip's query tokens (N, Q, Dq), in eval mode, as stage 2's --encode-once."""
    spec = model.processor.image
    return torch.cat([model.encode(pixels(clips.frames[i:i + batch], spec)) for i in range(0, len(clips), batch)])


class ChunkSampler:
    """The rally chunks of a clip set (train.qa: chunks of 5 consecutive strokes) over its cached
    query tokens, as stage-2 batches."""

    def __init__(self, clips: ClipSet, tokens: torch.Tensor):
        row = {id(s): i for i, s in enumerate(clips.strokes)}
        self.tokens, self.chunks = tokens, rally_chunks(clips.strokes, CHUNK)
        self.rows = [[row[id(s)] for s in c.strokes] for c in self.chunks]
        self.chunk_of = np.empty(len(clips), dtype=int)
        for n, rows in enumerate(self.rows):
            self.chunk_of[rows] = n

    def fixed_questions(self, count: int, seed: int) -> list[tuple[int, dict]]:
        """Every question (train.qa.chunk_questions) of evenly spaced chunks, about `count` in all."""
        per_chunk = NEGATIVES_PER_CHUNK + POSITIVES_PER_CHUNK
        picks = np.linspace(0, len(self.chunks) - 1, max(1, count // per_chunk)).round().astype(int)
        return [(int(n), q) for n in dict.fromkeys(picks.tolist())
                for q in chunk_questions(self.chunks[n], random.Random(seed + int(n)))]

    def clips(self, questions: list[tuple[int, dict]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunks' cached tokens (B, K, Q, Dq), padded to the longest, and their clip mask (B, K)."""
        return pad_chunks([self.tokens[self.rows[n]] for n, _ in questions])

    def batch(self, questions: list[tuple[int, dict]], processor) -> dict[str, torch.Tensor]:
        """(chunk number, question) pairs -> StrokeVLM inputs from cached tokens, with labels."""
        clip_tokens, mask = self.clips(questions)
        prompts = processor.prompts([qa_prompt(len(self.rows[n]), q["question"]) for n, q in questions])
        return {"clip_tokens": clip_tokens, "clip_mask": mask, **prompts,
                "labels": processor.labels([q["answer"] for _, q in questions], 32)}


def answer_accuracy(model, sampler: ChunkSampler, questions: list[tuple[int, dict]], batch: int = 64) -> dict[str, float]:
    """Greedy answers to fixed questions: index-set F1 and "does not occur" accuracy."""
    tokens, mask = sampler.clips(questions)
    answers = model.answer(tokens, mask, [q["question"] for _, q in questions], GREEDY, batch_size=batch)
    m = grounding_metrics([a.indices for a in answers], [q["indices"] for _, q in questions])
    return {"f1": m["f1"], "impossible": m["impossible_accuracy"]}


# ---------------------------------------------------------------- the phases


class Phase(Loop):
    """One pretraining phase through the recipes' loop (train.loop.Loop): AdamW with weight decay
    0.01, warm-up and cosine decay, gradient norm clipped to 1.0, over batches of training-clip
    indices (train.clip_cache.ClipOrder). It ends after `steps` or `minutes`, whichever comes
    first, and the decay follows whichever is nearer its end (a budget in minutes still ends at a
    small learning rate). Checkpoints (checkpoints/<name>/step-N) hold every weight of the model
    and the stroke heads."""

    def __init__(self, run: "Pretraining", name: str, params: list, lr: float, steps: int, minutes: float,
                 loss: Callable[[np.ndarray], torch.Tensor], scores: Callable[[], dict], rngs: dict):
        cfg = run.cfg
        self.pretraining, self.loss, self.evaluate = run, loss, scores
        self.offset_s = 0.0  # seconds of the pretraining before this phase (for elapsed_s)
        self.order = ClipOrder(len(run.train), cfg.batch_size, cfg.seed)
        plan = Plan(steps, self.order.batches_per_epoch, minutes * 60, log_every=LOG_EVERY, eval_every=cfg.eval_every,
                    save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, grad_clip=1.0)

        def schedule(step: int, spent: float) -> float:
            return warmup_cosine(step, cfg.warmup, max((step - cfg.warmup) / max(1, steps - cfg.warmup), spent))
        super().__init__(run.out, adamw(params, lr, weight_decay=0.01), schedule, plan, device=run.model.device,
                         phase=name, rngs=rngs)

    def open_epoch(self, epoch: int, first: int) -> Iterator:
        return iter(self.order.epoch(epoch)[first:])

    def accumulate(self, batches: Iterator, k: int) -> tuple[torch.Tensor, int]:
        index = next(batches)
        loss = self.loss(index)
        loss.backward()
        return loss.detach(), len(index)

    def scores(self) -> dict:
        return self.evaluate()

    def log_due(self, step: int) -> bool:
        every = self.plan.eval_every
        return step == 1 or step % self.plan.log_every == 0 or bool(every and step % every == 0)

    def loss_fields(self, loss: float, lr: float, samples_per_s: float) -> dict:
        # clips per second since the phase began (samples_per_s is the last window's)
        clips_per_s = round(self.step * self.pretraining.cfg.batch_size / self.elapsed(), 1)
        return {"loss": loss, "clips_per_s": clips_per_s, "lr": lr}

    def record(self, fields: dict) -> dict:
        return {**super().record(fields), "elapsed_s": round(self.offset_s + self.elapsed(), 1)}

    def report(self, record: dict) -> None:
        log.info("%s", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    def save_weights(self, ckpt: Path) -> None:
        torch.save({k: m.state_dict() for k, m in self.pretraining.modules.items()}, ckpt / WEIGHTS)

    def load_weights(self, ckpt: Path) -> None:
        state = torch.load(ckpt / WEIGHTS, map_location=self.device, weights_only=True)
        for k, m in self.pretraining.modules.items():
            m.load_state_dict(state[k])

    def extra_state(self) -> dict:
        return {"config": self.pretraining.resume_config}

    def load_extra_state(self, state: dict, ckpt: Path) -> None:
        old, new = state["config"], self.pretraining.resume_config
        changed = [k for k in new if old.get(k) != new[k]]
        if changed:
            raise TrainError(f"--resume: {ckpt} was written with other options: " +
                             ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in changed))


class Pretraining:
    """One pretraining run into the base folder `out` (already holding the random or --init base)."""

    def __init__(self, train: ClipSet, heldout: ClipSet | None, out: Path, cfg: PretrainConfig):
        self.train, self.out, self.cfg = train, out, cfg
        self.model = build_model(ModelSettings(base=str(out), num_frames=cfg.num_frames, device=cfg.device))
        self.vlm, self.spec = self.model.vlm, self.model.processor.image
        if self.model.device.type == "cpu":
            # The tiny tower attends over 50 tokens per frame; on CPU PyTorch's fused attention kernel was
            # slower there than matmul + softmax (phase-A steps about 10 % faster with "eager").
            self.vlm.base.vision_model.set_attn_implementation("eager")
        if train.frames.shape[1] != cfg.num_frames or train.frames.shape[2] != self.spec.size:
            raise ValueError(f"clips are {train.frames.shape[1:3]} (frames, size); the base needs "
                             f"({cfg.num_frames}, {self.spec.size})")
        self.gold = {k: v.to(self.model.device) for k, v in labels(train).items()}
        self.rng = np.random.default_rng(cfg.seed + 1)  # the augmentation's, shared by phases A and B
        self.held = heldout.subset(np.arange(min(cfg.eval_limit, len(heldout)))) if heldout else None
        self.seen = train.subset(np.linspace(0, len(train) - 1, min(cfg.eval_limit // 2, len(train))).round().astype(int))
        self.heads = StrokeHeads(self.vlm.base.config.qformer_config.hidden_size).to(self.model.device)
        self.modules = {"vlm": self.vlm, "heads": self.heads}  # what a checkpoint holds
        self.resume_config = {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE}
        self.timings: dict[str, float] = {}
        self.texts = [s.caption for s in train.strokes]

    def batch(self, index: np.ndarray) -> torch.Tensor:
        return pixels(augment(self.train.frames[index], self.rng, self.cfg.shift), self.spec).to(self.model.device)

    def scores_of(self, accuracy: Callable[[ClipSet], dict]) -> Callable[[], dict]:
        """A phase's scores: `accuracy` on the held-out clips and on the fixed sample of training clips."""
        def run() -> dict:
            out = {f"train_{k}": v for k, v in accuracy(self.seen).items()}
            return {**({f"heldout_{k}": v for k, v in accuracy(self.held).items()} if self.held else {}), **out}
        return run

    def head_loss(self, tokens: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        out = self.heads(tokens)
        return sum(nn.functional.cross_entropy(out[k], self.gold[k][index]) for k in FIELDS)

    def caption_inputs(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """The stage-1 prompt and the captions of clips `index` as labels."""
        proc = self.model.processor
        targets = proc.labels([self.texts[i] for i in index], 32)
        return {**proc.prompts([CAPTION_PROMPT] * len(index)), "labels": targets}

    def phase(self, name: str, steps: int, minutes: float, lr: float, params: list,
              loss: Callable[[np.ndarray], torch.Tensor], scores: Callable[[], dict], rngs: dict,
              setup_s: float = 0.0) -> int:
        """Run one phase (from its checkpoint with --resume); returns its steps."""
        if not steps:
            self.timings[f"phase_{name.lower()}_s"] = round(setup_s, 1)
            return 0
        loop = Phase(self, name, params, lr, steps, minutes, loss, scores, rngs)
        loop.offset_s = sum(self.timings.values()) + setup_s
        if self.cfg.resume:
            loop.resume()
        loop.run()
        self.timings[f"phase_{name.lower()}_s"] = round(setup_s + loop.elapsed(), 1)
        return loop.step

    def phase_a(self) -> int:
        """Vision tower + Q-Former + queries + frame embedding, through three heads."""
        vlm, cfg = self.vlm, self.cfg
        params = [*vlm.base.vision_model.parameters(), *vlm.base.qformer.parameters(), vlm.base.query_tokens,
                  vlm.frame_embed, *(vlm.tubelet.parameters() if vlm.tubelet is not None else ()),
                  *self.heads.parameters()]

        def loss(index):
            vlm.train()
            return self.head_loss(vlm.encode_clips(self.batch(index)), index)
        accuracy = self.scores_of(lambda clips: head_accuracy(self.model, self.heads, clips))
        return self.phase("A", cfg.steps_a, cfg.minutes_a, cfg.lr_a, params, loss, accuracy, {"augment": self.rng})

    def phase_b(self) -> int:
        """Everything trains on the captions (LM loss under the stage-1 prompt), optionally with the
        heads' loss beside it: from the random T5's first gradients alone the tower loses part of what A taught."""
        vlm, cfg, device = self.vlm, self.cfg, self.model.device
        params = [*vlm.parameters(), *(self.heads.parameters() if cfg.heads_b else ())]

        def loss(index):
            vlm.train()
            tokens = vlm.encode_clips(self.batch(index))
            out = vlm(**model_inputs(self.caption_inputs(index), device), clip_tokens=tokens[:, None]).loss
            return out + cfg.heads_b * self.head_loss(tokens, index) if cfg.heads_b else out
        accuracy = self.scores_of(lambda clips: caption_accuracy(self.model, clips))
        return self.phase("B", cfg.steps_b, cfg.minutes_b, cfg.lr_b, params, loss, accuracy, {"augment": self.rng})

    def phase_c(self) -> int:
        """Instruction tuning on questions about several strokes. As in stage 2, the vision tower and
        Q-Former stay frozen, so every clip is encoded once; the LLM (all of it) and the clip tags
        train on fresh questions over any training rally, mixed with single-clip captions."""
        vlm, cfg, model = self.vlm, self.cfg, self.model
        if not (cfg.steps_c and cfg.minutes_c > 0):
            self.timings["phase_c_s"] = 0.0
            return 0
        t = time.perf_counter()
        tokens = encode_all(model, self.train)
        if not vlm.clip_embed[1:].any():  # a continued base keeps its trained tags
            vlm.orthogonal_clip_tags(tokens[:512], cfg.seed)
        chunks = ChunkSampler(self.train, tokens)
        fixed_train = chunks.fixed_questions(cfg.eval_limit // 2, cfg.seed)
        if self.held:
            held_chunks = ChunkSampler(self.held, encode_all(model, self.held))
            fixed_held = held_chunks.fixed_questions(cfg.eval_limit // 2, cfg.seed)
        rng = random.Random(cfg.seed + 2)

        def loss(index):
            vlm.train()
            if rng.random() < cfg.caption_share:
                inputs = {"clip_tokens": tokens[index][:, None], **self.caption_inputs(index)}
            else:
                inputs = chunks.batch([(n, draw_question(chunks.chunks[n], rng, cfg.negatives))
                                       for n in chunks.chunk_of[index]], model.processor)
            return vlm(**model_inputs(inputs, model.device)).loss

        def accuracy() -> dict:
            out = {f"train_{k}": v for k, v in answer_accuracy(model, chunks, fixed_train).items()}
            if self.held:
                out.update({f"heldout_{k}": v for k, v in answer_accuracy(model, held_chunks, fixed_held).items()})
            return out
        setup_s = time.perf_counter() - t
        return self.phase("C", cfg.steps_c, max(cfg.minutes_c - setup_s / 60, 0.1), cfg.lr_c,
                          [*vlm.llm.parameters(), vlm.clip_embed], loss, accuracy, {"questions": rng}, setup_s)

    def save(self, steps: dict[str, int]) -> dict:
        """Write the base folder and pretrain.json; the checkpoints have served their purpose."""
        cfg, out = self.cfg, self.out
        self.vlm.eval()
        self.vlm.base.save_pretrained(out)
        self.model.tokenizer.save_pretrained(out)
        save_stroke_embeddings(self.vlm, out)
        summary = {"base": str(out), **steps, **self.timings, "train_clips": len(self.train),
                   "heldout_clips": len(self.held) if self.held else 0,
                   "config": {**asdict(cfg), "spec": None if cfg.init else asdict(cfg.spec)}}
        (out / "pretrain.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return summary


def pretrain(train: ClipSet, heldout: ClipSet | None, out: str | Path, cfg: PretrainConfig | None = None) -> dict:
    """Build a tiny base (or copy `cfg.init`), pretrain it (phases A, B, C) into `out`; returns a summary.
    With `cfg.resume` each phase continues from its newest checkpoint in `out`."""
    cfg = cfg or PretrainConfig()
    out = Path(out)
    if cfg.init and Path(cfg.init).resolve() == out.resolve():
        raise ValueError("write the continued base to another folder than --init")
    try:
        resolve_device(cfg.device)
    except RuntimeError as err:
        raise TrainError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and not checkpoints(out, "A") + checkpoints(out, "B") + checkpoints(out, "C"):
        log.warning("--resume: no checkpoint in %s; starting from the beginning", out / "checkpoints")
    if not cfg.resume:
        (out / METRICS).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    torch.manual_seed(cfg.seed)
    if cfg.init:
        shutil.copytree(cfg.init, out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(METRICS, "pretrain.json", "checkpoints"))
    else:
        make_base(out, cfg.spec, cfg.seed, cfg.motion, cfg.tubelet)
    run = Pretraining(train, heldout, out, cfg)
    steps = {"steps_a": run.phase_a(), "steps_b": run.phase_b(), "steps_c": run.phase_c()}
    return run.save(steps)


def load_renders(folders: list[str | Path], num_frames: int, size: int) -> ClipSet:
    """Every captioned stroke of every rendered set below the folders, as in-memory clips."""
    parts = []
    for folder in folders:
        for csv_path in sorted(Path(folder).glob("*/set*.csv")):
            parts.append(cut_set(csv_path, csv_path.with_suffix(".mp4"), num_frames, size))
    where = ", ".join(map(str, folders))
    if not parts:
        raise FileNotFoundError(f"no rendered sets (<video>/setN.csv + .mp4) below {where}")
    if not any(len(p) for p in parts):
        raise ValueError(f"no stroke below {where} has a caption: zones need the court corners of "
                         "match.csv / homography.csv beside the match folders (train/replay.py writes them)")
    return ClipSet.concat(parts)


def parser() -> argparse.ArgumentParser:
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m train.pretrain_base", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--renders", nargs="+", required=True, help="training renders (ShuttleSet layout)")
    p.add_argument("--heldout", nargs="*", default=[], help="held-out renders for the accuracy curves")
    p.add_argument("--out", required=True, help="base folder to write")
    p.add_argument("--init", help="continue from this base folder (its sizes, tokenizers, clip tags) instead of a "
                                  "random base; --steps-a 0 / --steps-b 0 / --steps-c 0 skip a phase")
    for name in ("num_frames", "batch_size", "lr_a", "lr_b", "lr_c", "warmup", "steps_a", "steps_b", "steps_c",
                 "minutes_a", "minutes_b", "minutes_c", "caption_share", "negatives", "heads_b", "shift", "eval_every",
                 "eval_limit", "seed", "save_every", "keep_checkpoints", "device", "tubelet"):
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(d, name)), default=getattr(d, name),
                       help=OPTION_HELP.get(name))
    p.add_argument("--motion", action=argparse.BooleanOptionalAction, default=d.motion,
                   help="grey + frame-difference input channels instead of colour")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out from its "
                                                         "newest checkpoint (same options)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = PretrainConfig(**{k: v for k, v in vars(args).items() if k not in ("renders", "heldout", "out")})
    size = cfg.spec.image_size
    if cfg.init:
        if not (Path(cfg.init) / "config.json").is_file():
            raise SystemExit(f"--init {cfg.init}: no base here (config.json missing)")
        size = ImageSpec.from_file(Path(cfg.init) / "preprocessor_config.json").size
    try:
        train = load_renders(args.renders, cfg.num_frames, size)
        heldout = load_renders(args.heldout, cfg.num_frames, size) if args.heldout else None
        summary = pretrain(train, heldout, args.out, cfg)
    except (FileNotFoundError, ValueError, TrainError) as err:  # bad folders, sizes or options: a message
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"base written to {summary['base']}: phase A {summary['steps_a']} steps in {summary['phase_a_s']} s, "
          f"phase B {summary['steps_b']} steps in {summary['phase_b_s']} s, "
          f"phase C {summary['steps_c']} steps in {summary['phase_c_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
