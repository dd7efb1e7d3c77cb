"""Training configuration: one typed dataclass per stage, loaded from YAML and the command line.

Precedence: the dataclass defaults (the reference system's hyper-parameters) < the YAML file
given with `--config` < command-line options (`--lr 1e-4`, `--lr=1e-4`, `--grad_accum 2`).
YAML files are flat `field: value` maps with the same names as the options.

Steps count optimizer updates (one update = `batch_size` x `grad_accum` samples per process).
`batch_size` is per process: under `accelerate launch` with N processes the global batch is
N x batch_size x grad_accum.
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import yaml

from core.config import EXPERIMENT_RANKS, LLM_LORA_PARTS, PRECISIONS, QFORMER_LORA_PARTS, LoraSettings

SCHEDULES = ("cosine", "linear", "constant")


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message says which and why."""


def _help(text: str, default=MISSING, factory=MISSING):
    kwargs = {"metadata": {"help": text}}
    if factory is not MISSING:
        kwargs["default_factory"] = factory
    else:
        kwargs["default"] = default
    return field(**kwargs)


@dataclass
class TrainConfig:
    """Options shared by both stages."""

    # inputs and outputs
    data: str = _help("dataset folder written by `python -m train.build_dataset`", "data/badminton")
    out: str = _help("run folder (config, metrics, checkpoints, best/, final/)", "runs/stage")
    base: str | None = _help("base checkpoint: Hugging Face id (already cached) or local folder", None)
    tiny: bool = _help("build a tiny random base into the run folder (smoke runs and tests)", False)
    num_frames: int = _help("frames sampled per stroke clip", 16)
    # optimisation
    lr: float = _help("peak learning rate (AdamW)", 5e-5)
    schedule: str = _help(f"learning-rate decay after warm-up: {', '.join(SCHEDULES)}", "cosine")
    warmup_steps: int = _help("linear warm-up steps (from warmup_start_lr to lr)", 0)
    warmup_start_lr: float = _help("learning rate at step 0 of the warm-up", 1e-8)
    weight_decay: float = _help("AdamW weight decay (matrices only; no decay on vectors)", 0.05)
    betas: tuple[float, float] = _help("AdamW betas", factory=lambda: (0.9, 0.999))
    grad_clip: float = _help("clip the gradient norm to this value (0: no clipping)", 0.0)
    epochs: int = _help("passes over the training data (the schedule spans all of them)", 20)
    batch_size: int = _help("samples per micro-batch and process", 16)
    grad_accum: int = _help("micro-batches per optimizer step", 1)
    max_steps: int = _help("stop after this many optimizer steps (0: run every epoch); the schedule "
                           "still spans `epochs` (or `schedule_steps`), so a short run sees the real schedule's start", 0)
    schedule_steps: int = _help("length of the learning-rate schedule in optimizer steps (0: every epoch)", 0)
    max_target_len: int = _help("maximum target length in tokens (longer targets are cut)", 64)
    # evaluation and saving
    eval_every: int = _help("evaluate on val every N steps (0: at the end of each epoch); "
                            "the run's last step is always evaluated", 0)
    eval_limit: int = _help("evaluate on the first N val samples only (0: all)", 0)
    eval_batch_size: int = _help("generation batch size (0: batch_size)", 0)
    num_beams: int = _help("beam search width", 5)
    max_new_tokens: int = _help("longest generated answer in tokens", 30)
    min_new_tokens: int | None = _help("shortest generated answer in tokens (None: the base's own floor, "
                                       "else the reference's 10)", None)
    save_every: int = _help("write checkpoints/step-N every N steps (0: at the end of each epoch); "
                            "the run's last step is always saved", 500)
    keep_checkpoints: int = _help("keep only the newest N checkpoints (0: keep all)", 3)
    log_every: int = _help("write a metrics.jsonl line every N steps", 10)
    resume: bool = _help("continue from the newest checkpoint in the run folder", False)
    # runtime
    precision: str = _help("fp32, bf16 (bf16 weights + autocast on GPU) or int8 (8-bit base, LoRA on top)", "fp32")
    device: str = _help("auto, cpu, cuda or cuda:N (under `accelerate launch` the process's GPU is used)", "auto")
    gradient_checkpointing: bool = _help("recompute activations in the backward pass to save memory", False)
    seed: int = _help("seed of the initialisation and the data order", 42)
    num_workers: int = _help("data-loader worker processes", 2)
    threads: int = _help("torch/OpenCV CPU threads of this process (0: the libraries' default; on a busy "
                         "2-core machine 1 was many times faster than 2)", 0)
    cache_clips: bool = _help("keep decoded clip tensors in memory after the first epoch", False)
    progress: bool = _help("show a progress bar", True)
    # LoRA (stage 1: the Q-Former part; stage 2: the LLM part)
    lora_dropout: float = _help("LoRA dropout", 0.0)

    stage = 0

    def __post_init__(self) -> None:
        if isinstance(self.betas, (list, str)):
            self.betas = tuple(_coerce(self.betas, tuple[float, float], "betas"))
        positive = ("lr", "epochs", "batch_size", "grad_accum", "num_frames", "max_target_len", "num_beams",
                    "max_new_tokens", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        at_least_zero = ("warmup_steps", "warmup_start_lr", "weight_decay", "grad_clip", "max_steps", "schedule_steps",
                         "eval_every", "eval_limit", "eval_batch_size", "save_every", "keep_checkpoints", "num_workers", "threads",
                         "min_new_tokens", "lora_dropout")
        for name in at_least_zero:
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ConfigError("min_new_tokens must not exceed max_new_tokens")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError("lora_dropout must be in [0, 1)")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.base and self.tiny:
            raise ConfigError("give --base or --tiny, not both")

    def lora_settings(self) -> LoraSettings:
        raise NotImplementedError

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def save(self, path: str | Path) -> None:
        header = f"# resolved configuration of a stage-{self.stage} run: python -m train.stage{self.stage} --config THIS\n"
        Path(path).write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False))


@dataclass
class Stage1Config(TrainConfig):
    """Stage 1: single-stroke captioning, LoRA on the Q-Former, the frame embedding trains."""

    out: str = _help("run folder (config, metrics, checkpoints, best/, final/)", "runs/stage1")
    warmup_steps: int = _help("linear warm-up steps (from warmup_start_lr to lr)", 1000)
    experiment: int | None = _help("the README's preset: Q-Former cross-attention LoRA with r = 1, 2, 4, 8 for "
                                   "experiment 1..4 (alpha 8); explicit qformer_* options override it", 1)
    qformer_parts: tuple[str, ...] | None = _help(
        f"Q-Former LoRA parts, comma-separated: {', '.join(QFORMER_LORA_PARTS)}", None)
    qformer_r: int | None = _help("Q-Former LoRA rank", None)
    qformer_alpha: int | None = _help("Q-Former LoRA alpha", None)
    llm_part: str | None = _help(f"also LoRA on the LLM ({', '.join(LLM_LORA_PARTS)}); the original's ablation",
                                 None)
    llm_r: int = _help("LLM LoRA rank (with llm_part)", 4)
    llm_alpha: int = _help("LLM LoRA alpha (with llm_part)", 8)
    init: str | None = _help("fine-tune this model's captioner (an adapter folder or a run): its base, frame "
                             "count, Q-Former LoRA and weights; a stage-2 model's LLM LoRA is left out. The LoRA "
                             "and base options are then the model's own", None)

    stage = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.experiment is not None and self.experiment not in EXPERIMENT_RANKS:
            raise ConfigError(f"experiment must be one of {sorted(EXPERIMENT_RANKS)}, got {self.experiment}")
        if self.init and (self.tiny or self.base):
            raise ConfigError("--init brings its own base: leave out --base and --tiny")
        if self.experiment is None and not self.qformer_parts and not self.init:
            raise ConfigError("stage 1 trains a Q-Former LoRA: give --experiment 1..4 or --qformer_parts")
        try:
            self.lora_settings()
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def lora_settings(self) -> LoraSettings:
        lora = LoraSettings.experiment(self.experiment) if self.experiment is not None else LoraSettings()
        lora.dropout = self.lora_dropout
        for name in ("qformer_parts", "qformer_r", "qformer_alpha"):
            if getattr(self, name) is not None:
                setattr(lora, name, getattr(self, name))
        if self.llm_part:
            lora.llm_part, lora.llm_r, lora.llm_alpha = self.llm_part, self.llm_r, self.llm_alpha
        return LoraSettings(**lora.to_dict())  # validates the combination


@dataclass
class Stage2Config(TrainConfig):
    """Stage 2: multi-stroke QA from a stage-1 run, LoRA on the LLM, the clip embedding trains."""

    out: str = _help("run folder (config, metrics, checkpoints, best/, final/)", "runs/stage2")
    init: str | None = _help("stage-1 run folder (its best/ is used, else final/) or adapter folder; a stage-2 "
                             "model's: its own LLM LoRA trains on, on this data", None)
    lr: float = _help("peak learning rate (AdamW)", 5e-4)
    schedule: str = _help(f"learning-rate decay after warm-up: {', '.join(SCHEDULES)}", "linear")
    batch_size: int = _help("samples per micro-batch and process", 4)
    grad_accum: int = _help("micro-batches per optimizer step", 4)
    max_target_len: int = _help("maximum target length in tokens (chain-of-thought targets are long)", 256)
    llm_part: str = _help(f"LLM LoRA targets: {', '.join(LLM_LORA_PARTS)} (all = q, v, wi, wo)", "all")
    llm_r: int = _help("LLM LoRA rank", 4)
    llm_alpha: int = _help("LLM LoRA alpha", 8)
    train_qformer: bool = _help("keep training the stage-1 Q-Former LoRA (and frame embedding)", False)
    encode_once: bool = _help("with the Q-Former frozen (no --train-qformer), encode every clip once before "
                              "training, in eval mode, and train on its query tokens (many times faster)", True)
    tag_clips: bool = _help("start clips 1.. of a chunk from orthogonal clip-segment tags as long as a projected "
                            "query token, where the model's are still at their zero start (stage 1 sees one clip); "
                            "clip 0 keeps its tag. Off: every tag grows from zero", True)
    negative_share: float | None = _help("repeat the impossible training questions until they make up this share "
                                         "(None: the data's own mix, 4 of 14 in the reference's datasets)", None)
    cot: bool | None = _help("chain-of-thought answers (None: detected from the data); sets the generation "
                             "length to 256 / 30 unless max/min_new_tokens are given", None)
    max_new_tokens: int | None = _help("longest generated answer (None: 256 with chain-of-thought, else 32)", None)
    min_new_tokens: int | None = _help("shortest generated answer (None: 30 with chain-of-thought, else 1)", None)

    stage = 2

    def __post_init__(self) -> None:
        if self.llm_part not in LLM_LORA_PARTS:
            raise ConfigError(f"llm_part must be one of {sorted(LLM_LORA_PARTS)}, got {self.llm_part!r}")
        if self.llm_r < 1 or self.llm_alpha < 1:
            raise ConfigError("llm_r and llm_alpha must be >= 1")
        if self.negative_share is not None and not 0 < self.negative_share < 1:
            raise ConfigError(f"negative_share must be between 0 and 1, got {self.negative_share}")
        max_new, min_new = self.max_new_tokens, self.min_new_tokens
        self.max_new_tokens, self.min_new_tokens = max_new or 1, min_new or 0  # validated as set, resolved later
        super().__post_init__()
        self.max_new_tokens, self.min_new_tokens = max_new, min_new

    def resolve_generation(self, cot: bool) -> None:
        """Fill the generation lengths left at None once the data says whether answers are chain-of-thought."""
        self.cot = cot if self.cot is None else self.cot
        if self.max_new_tokens is None:
            self.max_new_tokens = 256 if self.cot else 32
        if self.min_new_tokens is None:
            self.min_new_tokens = 30 if self.cot else 1
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError("min_new_tokens must not exceed max_new_tokens")

    def lora_llm(self) -> LoraSettings:
        """The LLM LoRA that stage 2 adds on top of the stage-1 model."""
        return LoraSettings(llm_part=self.llm_part, llm_r=self.llm_r, llm_alpha=self.llm_alpha,
                            dropout=self.lora_dropout)


# ---------------------------------------------------------------- YAML + command line


def _unwrap_optional(hint):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _parse_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _coerce(value, hint, name: str):
    """A YAML or command-line value as the field's type (YAML reads `1e-4` as text, for one)."""
    inner, optional = _unwrap_optional(hint)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name} must not be empty")
    try:
        if inner is bool:
            return _parse_bool(value)
        if inner in (int, float, str):
            if inner is int and isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            if inner is int and isinstance(value, str):
                return int(float(value)) if float(value).is_integer() else int(value)
            return inner(value)
        if typing.get_origin(inner) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            elem = typing.get_args(inner)[0]
            return tuple(elem(x.strip() if isinstance(x, str) else x) for x in items if str(x).strip())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: cannot read {value!r} as {getattr(inner, '__name__', inner)} ({err})") from None
    return value


def _default(f):
    return f.default if f.default is not MISSING else f.default_factory()


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def load_yaml(path: str | Path, cls: type[TrainConfig]) -> dict:
    """The field values a YAML file sets, coerced to their types; unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected `field: value` lines at the top level")
    return _field_values(data, cls, f"{path}: unknown option")


def _field_values(options: dict, cls: type[TrainConfig], unknown: str) -> dict:
    """`options` (names with - or _) as field values of `cls`, coerced to their types."""
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    out = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"{unknown} {key!r}; known options: {', '.join(sorted(known))}")
        out[name] = _coerce(value, hints[name], name)
    return out


def _converter(hint, name: str):
    def convert(text):
        return _coerce(text, hint, name)

    inner, optional = _unwrap_optional(hint)
    label = "comma-separated list" if typing.get_origin(inner) is tuple else getattr(inner, "__name__", str(inner))
    convert.__name__ = label + (" or none" if optional else "")  # argparse names it in "invalid ... value"
    return convert


def build_parser(cls: type[TrainConfig], prog: str, description: str) -> argparse.ArgumentParser:
    """Every dataclass field as `--name` (also `--name_with_underscores`), with its type and help."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", metavar="YAML", help="YAML file of option values (command-line options win)")
    hints = _hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        inner, _ = _unwrap_optional(hint)
        default = _default(f)
        names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {default})")
        conv = _converter(hint, f.name)
        if inner is bool:
            kwargs.update(nargs="?", const=True, type=conv, metavar="BOOL")
        else:
            kwargs.update(type=conv, metavar=f.name.upper())
        p.add_argument(*names, **kwargs)
    return p


def parse_config(cls: type[TrainConfig], argv: list[str] | None, prog: str, description: str,
                 parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Defaults < YAML (`--config`) < command line. Raises ConfigError with a readable message."""
    p = parser or build_parser(cls, prog, description)
    cli = vars(p.parse_args(argv))  # a bad value exits with argparse's usage message
    config_file = cli.pop("config", None)
    values = load_yaml(config_file, cls) if config_file else {}
    values.update(cli)
    return cls(**values)


def config_from_file(path: str | Path, cls: type[TrainConfig]) -> TrainConfig:
    return cls(**load_yaml(path, cls))


STAGE_CONFIGS: dict[int, type[TrainConfig]] = {1: Stage1Config, 2: Stage2Config}


def stage_config(stage: int) -> type[TrainConfig]:
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"stage must be one of {sorted(STAGE_CONFIGS)}, got {stage!r}")
    return STAGE_CONFIGS[stage]


def option_defaults(stage: int) -> dict:
    """Every option of a stage with its default value (the Train tab starts from these)."""
    return {f.name: _default(f) for f in fields(stage_config(stage))}


def run_config(stage: int, options: dict) -> TrainConfig:
    """A stage's configuration from option values by name (`{"lr": 1e-4, "max_steps": 2}`), validated
    by its dataclass as `--config` and the command line are; ConfigError names an unknown or bad option.
    The app starts runs through this: `config.save(RUN/...)`, then `python -m train.stageN --config` it."""
    cls = stage_config(stage)
    return cls(**_field_values(options, cls, f"not an option of stage {stage}:"))
