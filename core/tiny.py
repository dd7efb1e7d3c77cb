"""Tiny InstructBLIP-shaped base checkpoints, built offline and saved in the Hugging Face
folder format, so that tests and the demo model go through the same loading path as
`Salesforce/instructblip-flan-t5-xl`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

from core.loader import QFORMER_TOKENIZER_DIR
from core.processor import ImageSpec
from core.prompts import CAPTION_PROMPT, QA_PROMPT, QFORMER_INSTRUCTION
from core.tokenizer import build_llm_tokenizer, build_qformer_tokenizer
from core.vocab import STROKES, ZONE_PHRASES


@dataclass
class TinySpec:
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    qformer_hidden: int = 32
    qformer_layers: int = 2
    num_query_tokens: int = 4
    llm_width: int = 32
    llm_layers: int = 2
    llm_heads: int = 4
    llm_ffn: int = 64


def default_corpus() -> list[str]:
    """Words the product's prompts, captions and answers use (other text falls back to characters)."""
    words = [CAPTION_PROMPT, QA_PROMPT, QFORMER_INSTRUCTION, "upper bottom player hits a", *STROKES,
             *ZONE_PHRASES.values(), "The event happens at stroke strokes", "The event does not occur",
             "therefore the answer is not occur", "When does the At what point in the rally perform execute"
             " Identify when Locate moment played by time this plays is occur during happen takes place"
             " Which stroke shot lands occurs What happens"]
    return words


def tiny_config(spec: TinySpec, vocab_size: int, qformer_vocab_size: int) -> InstructBlipConfig:
    vision = dict(hidden_size=spec.vision_hidden, intermediate_size=spec.vision_hidden * 2,
                  num_hidden_layers=spec.vision_layers, num_attention_heads=4, image_size=spec.image_size,
                  patch_size=spec.patch_size, initializer_range=0.02)
    qformer = dict(vocab_size=qformer_vocab_size, hidden_size=spec.qformer_hidden,
                   num_hidden_layers=spec.qformer_layers, num_attention_heads=4,
                   intermediate_size=spec.qformer_hidden * 2, encoder_hidden_size=spec.vision_hidden,
                   cross_attention_frequency=1, max_position_embeddings=64)
    text = dict(model_type="t5", vocab_size=vocab_size, d_model=spec.llm_width, d_kv=spec.llm_width // spec.llm_heads,
                d_ff=spec.llm_ffn, num_layers=spec.llm_layers, num_decoder_layers=spec.llm_layers,
                num_heads=spec.llm_heads, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
    return InstructBlipConfig(vision_config=vision, qformer_config=qformer, text_config=text,
                              num_query_tokens=spec.num_query_tokens)


def build_tiny_base(folder: str | Path, spec: TinySpec | None = None, corpus: Iterable[str] | None = None,
                    seed: int = 0) -> Path:
    """A randomly initialised tiny base checkpoint with its tokenizers, saved to `folder`."""
    spec = spec or TinySpec()
    folder = Path(folder)
    tokenizer = build_llm_tokenizer(corpus or default_corpus())
    qformer_tok = build_qformer_tokenizer([QFORMER_INSTRUCTION])
    with torch.random.fork_rng():  # the caller's random state goes on as if no base had been built
        torch.manual_seed(seed)
        model = InstructBlipForConditionalGeneration(tiny_config(spec, len(tokenizer), len(qformer_tok)))
        # transformers zero-initialises the query tokens (a pretrained base overwrites them); from
        # scratch, identical queries would stay identical, so break the symmetry as BLIP-2 does.
        with torch.no_grad():
            model.query_tokens.normal_(0.0, model.config.initializer_range)
    model.generation_config.min_new_tokens = 1  # word-level tokens: the reference's floor of 10 is 10 words
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    qformer_tok.save_pretrained(folder / QFORMER_TOKENIZER_DIR)
    (folder / "preprocessor_config.json").write_text(json.dumps(ImageSpec(size=spec.image_size).to_dict(), indent=2))
    return folder

