"""The stroke video-language model: InstructBLIP's vision tower, Q-Former and FlanT5, made
to read stroke clips.

One stroke clip (T frames) -> the vision tower per frame (a base pretrained on strokes may add a
tubelet embedding: a Conv3d over neighbouring frames whose output joins each frame's patch
embedding, so the tower's first layer sees motion) -> a learned frame-position embedding
added to each frame's tokens -> the Q-Former's queries attend over the tokens of all T frames
(reading the fixed instruction) -> `num_query_tokens` tokens per stroke. Stage 2 feeds K clips
of a rally chunk: each is encoded alone, projected to the LLM width, tagged with a learned
clip-segment embedding, and the K*Q tokens go before the text prompt. Padding clips are never
encoded and are masked in the LLM.

The vision tower and Q-Former do not see the question, so a stroke's query tokens
(`encode_clips`) can be cached and reused for every question (`forward(clip_tokens=...)`).

`StrokeModel` (the network with its processor, settings and device) is the one inference API:
`encode(clips) -> tokens`, `caption(tokens) -> texts`, `answer(tokens, mask, questions) ->
answers`. Everything that captions a stroke or answers a question goes through it, so the index,
the app, evaluation and pretraining all read the same model the same way.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from transformers import InstructBlipForConditionalGeneration

from core.config import CAPTION_BATCH, REFERENCE_MIN_NEW_TOKENS, GenerationSettings, ModelSettings
from core.lora import without_llm_lora
from core.processor import StrokeProcessor
from core.prompts import CAPTION_PROMPT, parse_answer, qa_prompt

ANSWER_BATCH = 16


class StrokeVLM(nn.Module):
    def __init__(self, base: InstructBlipForConditionalGeneration, qformer_input_ids: torch.Tensor,
                 num_frames: int = 16, max_clips: int = 16, tubelet_frames: int = 0):
        super().__init__()
        self.base = base
        cfg = base.config
        # New parameters, zero-initialised so that a fresh model starts as plain InstructBLIP.
        self.frame_embed = nn.Parameter(torch.zeros(num_frames, cfg.vision_config.hidden_size))
        self.clip_embed = nn.Parameter(torch.zeros(max_clips, cfg.text_config.d_model))
        self.register_buffer("qformer_input_ids", qformer_input_ids.view(1, -1).long(), persistent=False)
        self.num_frames, self.max_clips = num_frames, max_clips
        self.tubelet: nn.Conv3d | None = None
        self._clip_frames = 1
        if tubelet_frames:
            if tubelet_frames % 2 == 0:
                raise ValueError(f"tubelet_frames must be odd (centred on its frame), got {tubelet_frames}")
            v, patch = cfg.vision_config, cfg.vision_config.patch_size
            embed = base.vision_model.embeddings.patch_embedding
            self.tubelet = nn.Conv3d(embed.in_channels, v.hidden_size, (tubelet_frames, patch, patch),
                                     stride=(1, patch, patch), padding=(tubelet_frames // 2, 0, 0), bias=False)
            nn.init.zeros_(self.tubelet.weight)
            # The tower embeds frames one by one; the hook adds the tubelet's view of each frame's
            # neighbours to its patch embedding, leaving the Hugging Face tower itself unchanged.
            embed.register_forward_hook(self._add_tubelet)

    def _add_tubelet(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Patch embeddings (N*T, D, h, w) of frames (N*T, C, H, W) + the Conv3d over each clip's frames."""
        frames = args[0]
        t = self._clip_frames
        clips = frames.view(frames.shape[0] // t, t, *frames.shape[1:]).transpose(1, 2)  # (N, C, T, H, W)
        motion = self.tubelet(clips.to(self.tubelet.weight.dtype))  # (N, D, T, h, w)
        return out + motion.transpose(1, 2).flatten(0, 1).to(out.dtype)

    @property
    def num_query_tokens(self) -> int:
        return self.base.config.num_query_tokens

    @property
    def llm(self) -> nn.Module:
        return self.base.language_model

    def encode_clips(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Stroke clips (N, T, 3, H, W) -> Q-Former query outputs (N, Q, D_qformer)."""
        n, t = pixel_values.shape[:2]
        if t > self.num_frames:
            raise ValueError(f"clips have {t} frames; this model takes at most {self.num_frames}")
        vision = self.base.vision_model
        dtype = vision.embeddings.patch_embedding.weight.dtype
        # 1. vision tower per frame: (N*T, P, Dv), then tag each frame's tokens with its position
        self._clip_frames = t  # how the tubelet hook regroups the frames into clips
        frames = vision(pixel_values=pixel_values.flatten(0, 1).to(dtype)).last_hidden_state
        frames = frames.view(n, t, *frames.shape[1:]) + self.frame_embed[:t, None].to(frames.dtype)
        image_embeds = frames.flatten(1, 2)  # (N, T*P, Dv): the queries see all frames at once
        # 2. the Q-Former's queries cross-attend to them, reading the fixed instruction
        queries = self.base.query_tokens.expand(n, -1, -1)
        ids = self.qformer_input_ids.expand(n, -1)
        mask = torch.ones(n, queries.shape[1] + ids.shape[1], dtype=torch.long, device=ids.device)
        out = self.base.qformer(
            input_ids=ids,
            attention_mask=mask,
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long, device=ids.device),
        ).last_hidden_state
        return out[:, : queries.shape[1]]

    @torch.no_grad()
    def orthogonal_clip_tags(self, clip_tokens: torch.Tensor, seed: int = 0) -> float:
        """Set the clip-segment tags of clips 1.. to orthogonal vectors as long as a projected query
        token of `clip_tokens` (N, Q, Dq); clip 0 keeps its tag. Returns that length.

        T5 has no absolute positions: the tags are how the LLM tells the clips of a chunk apart,
        and from their zero start it would first have to grow them."""
        proj = self.base.language_projection
        norm = float(proj(clip_tokens.to(proj.weight.dtype)).norm(dim=-1).mean())
        count, width = self.clip_embed.shape
        rows = torch.randn(width, count, generator=torch.Generator().manual_seed(seed))
        self.clip_embed[1:] = (torch.linalg.qr(rows).Q.T[1:] * norm).to(self.clip_embed)
        return norm

    def clip_inputs(self, clip_tokens: torch.Tensor, clip_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query outputs (B, K, Q, Dq) + clip mask (B, K) -> LLM embeddings (B, K*Q, D) and their mask."""
        b, k, q = clip_tokens.shape[:3]
        if k > self.max_clips:
            raise ValueError(f"{k} clips given; this model takes at most {self.max_clips}")
        proj = self.base.language_projection
        embeds = proj(clip_tokens.to(proj.weight.dtype)) + self.clip_embed[:k, None].to(proj.weight.dtype)
        return embeds.flatten(1, 2), clip_mask.long().repeat_interleave(q, dim=1)

    def _encode_batch(self, pixel_values: torch.Tensor | None, clip_tokens: torch.Tensor | None,
                      clip_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (B, K, T, 3, H, W) or (B, T, 3, H, W), or cached tokens (B, K, Q, Dq) -> (tokens, mask)."""
        if clip_tokens is None:
            if pixel_values is None:
                raise ValueError("give pixel_values or clip_tokens")
            if pixel_values.dim() == 5:  # a single clip per sample
                pixel_values = pixel_values[:, None]
            b, k = pixel_values.shape[:2]
            if clip_mask is None:
                clip_mask = torch.ones(b, k, dtype=torch.bool, device=pixel_values.device)
            clip_mask = clip_mask.bool()
            # Padding clips are never encoded: only the real ones go through vision and Q-Former.
            real = self.encode_clips(pixel_values[clip_mask])
            clip_tokens = real.new_zeros(b, k, *real.shape[1:])
            clip_tokens[clip_mask] = real
        elif clip_mask is None:
            clip_mask = torch.ones(clip_tokens.shape[:2], dtype=torch.bool, device=clip_tokens.device)
        return clip_tokens, clip_mask

    def llm_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values=None,
                   clip_tokens=None, clip_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The LLM encoder's input: clip tokens then prompt tokens, with every masked position
        moved to the end so that T5's relative positions do not depend on padding."""
        tokens, mask = self._encode_batch(pixel_values, clip_tokens, clip_mask)
        video, video_mask = self.clip_inputs(tokens, mask)
        text = self.llm.get_input_embeddings()(input_ids)
        embeds = torch.cat([video.to(text.dtype), text], dim=1)
        full_mask = torch.cat([video_mask, attention_mask.long()], dim=1)
        order = torch.sort(full_mask, dim=1, descending=True, stable=True).indices
        embeds = torch.gather(embeds, 1, order[..., None].expand_as(embeds))
        return embeds, torch.gather(full_mask, 1, order)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values=None,
                clip_tokens=None, clip_mask=None, labels: torch.Tensor | None = None):
        """Seq2seq output of the LLM (loss when labels are given; label -100 is ignored)."""
        embeds, mask = self.llm_inputs(input_ids, attention_mask, pixel_values, clip_tokens, clip_mask)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values=None,
                 clip_tokens=None, clip_mask=None, settings: GenerationSettings | None = None) -> torch.Tensor:
        """Beam-search token ids of the answers, shape (B, L)."""
        s = settings or GenerationSettings()
        min_new = s.min_new_tokens
        if min_new is None:
            min_new = getattr(self.base.generation_config, "min_new_tokens", None) or REFERENCE_MIN_NEW_TOKENS
        embeds, mask = self.llm_inputs(input_ids, attention_mask, pixel_values, clip_tokens, clip_mask)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=mask, num_beams=s.num_beams,
                                 max_new_tokens=s.max_new_tokens, min_new_tokens=min(min_new, s.max_new_tokens))


@dataclass
class ModelAnswer:
    """A stage-2 answer: the generated text and the stroke indices read from it (None: "the event
    does not occur"; []: unreadable, wrong for every question)."""

    text: str
    indices: list[int] | None


@dataclass
class StrokeModel:
    """The loaded model with its processor, settings and device: what inference code holds.

    One rule for the adapters: captions are stage 1's job, so a stage-2 model captions with its
    LLM LoRA switched off (its stage-1 adapters stay on); a stage-0 or stage-1 model captions with
    every adapter it has. Answers use every adapter."""

    vlm: StrokeVLM
    processor: StrokeProcessor
    settings: ModelSettings
    device: torch.device
    stage: int = 0

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.vlm.parameters(), *self.vlm.buffers()])

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode (no dropout) and no gradients; the training flag is restored afterwards, so a
        recipe can evaluate mid-training."""
        was_training = self.vlm.training
        self.vlm.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.vlm.train(was_training)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Clips (N, T, 3, S, S) -> query tokens (N, Q, Dq), as every caption and answer reads them."""
        with self._inference():
            return self.vlm.encode_clips(pixel_values.to(self.device))

    def caption(self, tokens: torch.Tensor, settings: GenerationSettings | None = None,
                batch_size: int = CAPTION_BATCH) -> list[str]:
        """One caption per stroke from its query tokens (N, Q, Dq), `batch_size` strokes per call."""
        texts: list[str] = []
        stage2 = without_llm_lora(self.vlm) if self.stage == 2 else nullcontext()
        with self._inference(), stage2:
            for start in range(0, len(tokens), batch_size):
                part = tokens[start:start + batch_size].to(self.device)[:, None]  # (B, 1, Q, Dq)
                prompt = self._prompts([CAPTION_PROMPT] * len(part))
                texts += self.processor.decode(self.vlm.generate(**prompt, clip_tokens=part, settings=settings))
        return texts

    def answer(self, tokens: torch.Tensor, mask: torch.Tensor, questions: list[str],
               settings: GenerationSettings | None = None, batch_size: int = ANSWER_BATCH) -> list[ModelAnswer]:
        """Stage-2 answers: chunk tokens (B, K, Q, Dq) with their clip mask (B, K), one question per
        chunk; the prompt names each chunk's own number of strokes. Default decoding: the
        reference's for answers (GenerationSettings.for_answers)."""
        if len(questions) != len(tokens):
            raise ValueError(f"{len(questions)} questions for {len(tokens)} chunks")
        settings = settings or GenerationSettings.for_answers()
        mask = mask.bool()
        out: list[ModelAnswer] = []
        with self._inference():
            for start in range(0, len(tokens), batch_size):
                part, part_mask = tokens[start:start + batch_size], mask[start:start + batch_size]
                k = int(part_mask.sum(1).max())  # drop padding clips no chunk of this batch uses
                counts = part_mask.sum(1).tolist()
                prompt = self._prompts([qa_prompt(int(n), q) for n, q in zip(counts, questions[start:])])
                ids = self.vlm.generate(**prompt, clip_tokens=part[:, :k].to(self.device),
                                        clip_mask=part_mask[:, :k].to(self.device), settings=settings)
                out += [ModelAnswer(t, parse_answer(t)) for t in self.processor.decode(ids)]
        return out

    def write(self, prompts: list[str], settings: GenerationSettings | None = None,
              batch_size: int = ANSWER_BATCH) -> list[str]:
        """Text from text alone, no video (a rally summary in the language model's own words): the
        LLM as its base trained it, its LoRA off."""
        s = settings or GenerationSettings(num_beams=4, max_new_tokens=96, min_new_tokens=1)
        texts: list[str] = []
        with self._inference(), without_llm_lora(self.vlm):
            for start in range(0, len(prompts), batch_size):
                enc = self._prompts(prompts[start:start + batch_size])
                ids = self.vlm.llm.generate(**enc, num_beams=s.num_beams, max_new_tokens=s.max_new_tokens,
                                            min_new_tokens=min(s.min_new_tokens or 1, s.max_new_tokens))
                texts += self.processor.decode(ids)
        return texts

    def _prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in self.processor.prompts(texts).items()}
