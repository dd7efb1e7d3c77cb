"""Load a base checkpoint (Hugging Face id or local folder), wrap it as the stroke model with
LoRA, and save/load the project's own weights (adapters + new parameters) with a manifest.

Nothing here reaches for the network: a hub id must already be in the local Hugging Face
cache, and a missing model is reported with what to do about it.

Adapter folder layout:
    manifest.json          base model, its architecture signature, stage, LoRA settings, tokenizer
    adapters.safetensors   LoRA weights ("qformer.*", "llm.*") + frame/clip embeddings
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BitsAndBytesConfig, InstructBlipForConditionalGeneration

from core.errors import ModelLoadError  # noqa: F401 - raised here, named by callers as core.loader's
from core.config import LoraSettings, ModelSettings
from core.device import compute_dtype, resolve_device
from core.lora import adapter_state_dict, attach_lora, load_adapter_state_dict
from core.model import StrokeModel, StrokeVLM
from core.processor import ImageSpec, StrokeProcessor
from core.prompts import QFORMER_INSTRUCTION, SPECIAL_TOKENS

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ADAPTERS = "adapters.safetensors"
MANIFEST_FORMAT = "shuttle-lens-adapters"
MANIFEST_VERSION = 1
STROKE_EMBEDDINGS = "stroke_embeddings.safetensors"  # optional, in a stroke-pretrained base folder
TUBELET = "tubelet"  # its Conv3d weight (D, C, frames, patch, patch), when the base has a tubelet embedding
QFORMER_TOKENIZER_DIR = "qformer_tokenizer"  # where InstructBlipProcessor saves it
INT8_SKIP = ["qformer", "query_tokens", "language_projection", "lm_head"]  # kept in float for LoRA


def load_base(settings: ModelSettings) -> tuple[InstructBlipForConditionalGeneration, object, object, ImageSpec]:
    """The base checkpoint in the requested precision: (model, llm tokenizer, qformer tokenizer, image spec)."""
    source = str(settings.base)
    kwargs: dict = {"local_files_only": True}
    if settings.precision == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=INT8_SKIP)
        kwargs["device_map"] = {"": str(resolve_device(settings.device))}
    else:
        kwargs["dtype"] = compute_dtype(settings.precision)
    try:
        model = InstructBlipForConditionalGeneration.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        qformer_tok = _qformer_tokenizer(source)
    except OSError as err:
        raise ModelLoadError(_missing_message(source, err)) from None
    except SafetensorError as err:
        raise ModelLoadError(f"{_weights_file(source)}: the base weights cannot be read ({err}); the file is "
                             "damaged or not a checkpoint") from None
    spec = _image_spec(source)
    if model.config.text_config.model_type != "t5":
        raise ModelLoadError(f"{source}: the language model is {model.config.text_config.model_type!r}; "
                             "the stroke model needs a FlanT5 (encoder-decoder) base")
    _add_special_tokens(model, tokenizer)
    return model, tokenizer, qformer_tok, spec


def build_model(settings: ModelSettings, stage: int = 0) -> StrokeModel:
    """Base + the stroke model's new parameters + freshly initialised LoRA from `settings.lora`."""
    base, tokenizer, qformer_tok, spec = load_base(settings)
    instruction = qformer_tok(QFORMER_INSTRUCTION, return_tensors="pt").input_ids[0]
    embeddings_file = Path(str(settings.base)) / STROKE_EMBEDDINGS
    embeddings = _read_stroke_embeddings(embeddings_file)
    tubelet = embeddings.get(TUBELET)
    vlm = StrokeVLM(base, instruction, settings.num_frames, settings.max_clips,
                    tubelet_frames=int(tubelet.shape[2]) if tubelet is not None else 0)
    _init_stroke_embeddings(vlm, embeddings, embeddings_file)
    device = resolve_device(settings.device)
    vlm.frame_embed.data = vlm.frame_embed.data.to(compute_dtype(settings.precision))
    vlm.clip_embed.data = vlm.clip_embed.data.to(compute_dtype(settings.precision))
    if vlm.tubelet is not None:
        vlm.tubelet.to(compute_dtype(settings.precision))
    attach_lora(vlm, settings.lora)
    if settings.precision != "int8":  # int8 weights were placed by from_pretrained
        vlm.to(device)
    else:
        vlm.frame_embed.data, vlm.clip_embed.data = vlm.frame_embed.data.to(device), vlm.clip_embed.data.to(device)
        vlm.qformer_input_ids = vlm.qformer_input_ids.to(device)
        if vlm.tubelet is not None:
            vlm.tubelet.to(device)
    vlm.eval()
    processor = StrokeProcessor(tokenizer, spec, settings.num_frames, settings.max_clips)
    return StrokeModel(vlm, processor, settings, device, stage)


def save_adapters(model: StrokeModel, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write adapters.safetensors + manifest.json (atomically: a crash never leaves half a file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (ADAPTERS + ".tmp")
    save_file(adapter_state_dict(model.vlm), str(tmp), metadata={"format": MANIFEST_FORMAT})
    tmp.replace(out / ADAPTERS)
    s = model.settings
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "base_model": str(s.base),
        "base_signature": base_signature(model.vlm.base.config),
        "stage": model.stage,
        "lora": s.lora.to_dict(),
        "num_frames": s.num_frames,
        "max_clips": s.max_clips,
        "tokenizer": {"source": "base checkpoint", "size": len(model.tokenizer),
                      "special_tokens": list(SPECIAL_TOKENS)},
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / MANIFEST)
    return out


def read_manifest(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"{adapter_dir}: no {MANIFEST} here; not a stroke-model adapter folder")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelLoadError(f"{path}: not a stroke-model manifest (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise ModelLoadError(f"{path}: manifest version {manifest['version']} is newer than this app reads")
    return manifest


def load_model(adapter_dir: str | Path, base: str | None = None, precision: str = "fp32",
               device: str = "auto", stage1: bool = False, check_base: Callable[[str], object] | None = None
               ) -> StrokeModel:
    """Rebuild a saved model: its base (or `base`, which must have the same architecture),
    its LoRA layout, then its weights. `stage1`: the model's stroke captioner only, its LLM LoRA
    left out (a stage-2 model captions as its stage 1 does): what fine-tuning captions starts from.
    `check_base` is given the base before anything is read (the folder resolved, or the hub id)
    and raises to refuse it: the app's workspace confinement."""
    manifest = read_manifest(adapter_dir)
    lora = dict(manifest["lora"])
    stage = manifest.get("stage", 0)
    if stage1:
        lora.update(llm_part=None, train_qformer=True)
        stage = min(stage, 1)
    base = base or _manifest_base(adapter_dir, manifest["base_model"])
    if check_base is not None:
        check_base(str(Path(base).resolve()) if Path(base).exists() else base)
    settings = ModelSettings(base=base,
                             num_frames=manifest["num_frames"],
                             max_clips=manifest["max_clips"], precision=precision, device=device,
                             lora=LoraSettings(**lora))
    model = build_model(settings, stage=stage)
    found = base_signature(model.vlm.base.config)
    diff = [f"{k}: adapters {manifest['base_signature'].get(k)} vs base {v}"
            for k, v in found.items() if manifest["base_signature"].get(k) != v]
    if diff:
        raise ModelLoadError(f"the adapters in {adapter_dir} were trained on base {manifest['base_model']!r}, "
                             f"which differs from {settings.base!r}: " + "; ".join(diff))
    weights = Path(adapter_dir) / ADAPTERS
    if not weights.is_file():
        raise ModelLoadError(f"{adapter_dir}: {ADAPTERS} is missing")
    try:
        state = load_file(str(weights), device=str(model.device))
        if stage1:
            state = {k: v for k, v in state.items() if not k.startswith("llm.")}
        load_adapter_state_dict(model.vlm, state)
    except ValueError as err:
        raise ModelLoadError(f"{weights}: {err}") from None
    except SafetensorError as err:
        raise ModelLoadError(f"{weights}: not a readable adapters file ({err}); the file is damaged") from None
    return model


def load_any(model: str | Path, precision: str = "fp32", device: str = "auto",
             check_base: Callable[[str], object] | None = None) -> StrokeModel:
    """An adapter folder (with manifest.json; `check_base`: see load_model), or a bare base
    checkpoint (a folder or a Hugging Face id)."""
    if (Path(model) / "manifest.json").is_file():
        return load_model(model, precision=precision, device=device, check_base=check_base)
    return build_model(ModelSettings(base=str(model), precision=precision, device=device))


def _manifest_base(adapter_dir: str | Path, base: str) -> str:
    """A relative base in a manifest names a folder beside the adapters (a model shipped with its
    base works from any working directory); otherwise it is a hub id or a path as written."""
    beside = Path(adapter_dir) / base
    return str(beside.resolve()) if not Path(base).is_absolute() and beside.is_dir() else base


def base_signature(config) -> dict:
    """The architecture facts that adapters depend on."""
    v, q, t = config.vision_config, config.qformer_config, config.text_config
    return {"vision_hidden": v.hidden_size, "vision_layers": v.num_hidden_layers, "image_size": v.image_size,
            "patch_size": v.patch_size, "qformer_hidden": q.hidden_size, "qformer_layers": q.num_hidden_layers,
            "num_query_tokens": config.num_query_tokens, "llm_type": t.model_type, "llm_width": t.d_model,
            "llm_layers": t.num_layers, "llm_ffn": t.d_ff, "llm_vocab": t.vocab_size}


def _read_stroke_embeddings(path: Path) -> dict[str, torch.Tensor]:
    """A base pretrained for strokes may carry its frame/clip embeddings (and a tubelet embedding)
    beside the checkpoint; a plain InstructBLIP base has none."""
    if not path.is_file():
        return {}
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise ModelLoadError(f"{path}: not a readable embeddings file ({err}); the file is damaged") from None


def _init_stroke_embeddings(vlm: StrokeVLM, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy the base's stroke embeddings into the model (those it lacks start at zero)."""
    with torch.no_grad():
        for name, target in _stroke_embeddings(vlm).items():
            if name in state:
                if state[name].shape != target.shape:
                    raise ModelLoadError(f"{path}: {name} has shape {tuple(state[name].shape)}, "
                                         f"the model needs {tuple(target.shape)}")
                target.copy_(state[name])


def save_stroke_embeddings(vlm: StrokeVLM, base_dir: str | Path) -> Path:
    """Store a pretrained base's frame/clip embeddings (and its tubelet embedding) beside its checkpoint."""
    path = Path(base_dir) / STROKE_EMBEDDINGS
    save_file({k: v.detach().float().cpu().contiguous() for k, v in _stroke_embeddings(vlm).items()}, str(path))
    return path


def _stroke_embeddings(vlm: StrokeVLM) -> dict[str, torch.Tensor]:
    """The tensors a stroke-pretrained base keeps in STROKE_EMBEDDINGS, by name."""
    return {"frame_embed": vlm.frame_embed, "clip_embed": vlm.clip_embed,
            **({TUBELET: vlm.tubelet.weight} if vlm.tubelet is not None else {})}


def _weights_file(source: str) -> str:
    """The weights file of a local base folder (for messages), else the base's name."""
    local = Path(source) / "model.safetensors"
    return str(local) if local.is_file() else source


def _qformer_tokenizer(source: str):
    local = Path(source)
    if local.is_dir():
        sub = local / QFORMER_TOKENIZER_DIR
        return AutoTokenizer.from_pretrained(sub if sub.is_dir() else local, local_files_only=True)
    return AutoTokenizer.from_pretrained(source, subfolder=QFORMER_TOKENIZER_DIR, local_files_only=True)


def _image_spec(source: str) -> ImageSpec:
    local = Path(source) / "preprocessor_config.json"
    if local.is_file():
        return ImageSpec.from_file(local)
    try:
        from huggingface_hub import hf_hub_download

        return ImageSpec.from_file(hf_hub_download(source, "preprocessor_config.json", local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: use InstructBLIP's defaults
        log.info("%s: no preprocessor_config.json; using InstructBLIP's image settings", source)
        return ImageSpec()


def _add_special_tokens(model: InstructBlipForConditionalGeneration, tokenizer) -> None:
    """Add the chain-of-thought tokens; grow the LLM's embeddings only if the vocab has no spare rows."""
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    if len(tokenizer) > model.language_model.get_input_embeddings().num_embeddings:
        model.language_model.resize_token_embeddings(len(tokenizer))


def _missing_message(source: str, err: Exception) -> str:
    if Path(source).exists():
        return f"{source}: not a complete InstructBLIP checkpoint folder ({str(err).splitlines()[0]})"
    return (f"base model {source!r} is neither a local folder nor in the local Hugging Face cache, and this app "
            f"never downloads at run time. On a machine with network access run "
            f"`huggingface-cli download {source}` (or save the model to a folder) and pass that folder.")
