"""Model, LoRA and generation settings."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

PRECISIONS = ("fp32", "bf16", "int8")

# Q-Former LoRA targets (module names inside transformers' InstructBlipQFormerModel).
QFORMER_LORA_PARTS = {
    "cross_attn": r"encoder\.layer\.\d+\.crossattention\.(attention\.(query|key|value)|output\.dense)",
    "self_attn_qv": r"encoder\.layer\.\d+\.attention\.attention\.(query|value)",
    "self_attn_out": r"encoder\.layer\.\d+\.attention\.output\.dense",
    "ffn": r"encoder\.layer\.\d+\.(intermediate|output|intermediate_query|output_query)\.dense",
}
# LLM LoRA targets (T5 module suffixes; "q"/"v" match self- and cross-attention, encoder and decoder).
LLM_LORA_PARTS = {
    "attn": ("q", "v"),
    "ffn": ("wi", "wo", "wi_0", "wi_1"),
    "all": ("q", "v", "wi", "wo", "wi_0", "wi_1"),
}
EXPERIMENT_RANKS = {1: 1, 2: 2, 3: 4, 4: 8}  # the README's experiment ids: Q-Former cross-attn LoRA


@dataclass
class LoraSettings:
    """Which parts carry LoRA, with what rank, and which of them train."""

    qformer_parts: tuple[str, ...] = ()
    qformer_r: int = 4
    qformer_alpha: int = 8
    llm_part: str | None = None
    llm_r: int = 4
    llm_alpha: int = 8
    dropout: float = 0.0
    train_qformer: bool = True  # stage 2 may keep the stage-1 Q-Former LoRA frozen
    train_llm: bool = True

    def __post_init__(self) -> None:
        self.qformer_parts = tuple(self.qformer_parts)
        unknown = set(self.qformer_parts) - set(QFORMER_LORA_PARTS)
        if unknown:
            raise ValueError(f"unknown Q-Former LoRA part(s) {sorted(unknown)}; choose from {sorted(QFORMER_LORA_PARTS)}")
        if self.llm_part is not None and self.llm_part not in LLM_LORA_PARTS:
            raise ValueError(f"unknown LLM LoRA part {self.llm_part!r}; choose from {sorted(LLM_LORA_PARTS)}")
        for name in ("qformer_r", "llm_r", "qformer_alpha", "llm_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoRA {name} must be >= 1")

    @classmethod
    def experiment(cls, experiment_id: int) -> "LoraSettings":
        """The README's presets 1..4: Q-Former cross-attention LoRA with r = 1, 2, 4, 8, alpha 8."""
        if experiment_id not in EXPERIMENT_RANKS:
            raise ValueError(f"experiment must be one of {sorted(EXPERIMENT_RANKS)}, got {experiment_id}")
        return cls(qformer_parts=("cross_attn",), qformer_r=EXPERIMENT_RANKS[experiment_id], qformer_alpha=8)

    def to_dict(self) -> dict:
        return asdict(self)


# Captions per generate() call: beam search pays Python overhead per step, so on the demo model 128 a
# call captioned a match about twice as fast as 32 (tests/benchmarks/bench_index_query.py).
CAPTION_BATCH = 128
REFERENCE_MIN_NEW_TOKENS = 10  # the reference's shortest caption, in FlanT5 sub-word tokens


@dataclass
class GenerationSettings:
    num_beams: int = 5
    max_new_tokens: int = 30
    # None: the base checkpoint's own floor (`min_new_tokens` in its generation_config.json; a tiny
    # base with a word-level tokenizer sets 1, since 10 of its tokens are 10 words), else the reference's.
    min_new_tokens: int | None = None

    @classmethod
    def for_answers(cls, chain_of_thought: bool = False) -> "GenerationSettings":
        """The reference's decoding of stage-2 answers: 1..32 tokens (chain-of-thought 30..256)."""
        return cls(min_new_tokens=30, max_new_tokens=256) if chain_of_thought else cls(min_new_tokens=1, max_new_tokens=32)


@dataclass
class ModelSettings:
    """Everything needed to rebuild the stroke model around a base checkpoint."""

    base: str  # Hugging Face id or local folder in the same format
    num_frames: int = 16
    max_clips: int = 16
    precision: str = "fp32"
    device: str = "auto"
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 1 <= self.max_clips <= 64:
            raise ValueError("max_clips must be between 1 and 64")
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
