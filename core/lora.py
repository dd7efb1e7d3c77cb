"""LoRA adapters on the Q-Former and on the LLM, through peft.

Each part gets its own peft injection (its own rank and targets); adapters are saved as one
flat state dict whose keys start with "qformer." or "llm.". `vlm` is always core.model.StrokeVLM
(typed as a module here: core.model itself uses `without_llm_lora`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from torch import nn

from core.config import LLM_LORA_PARTS, QFORMER_LORA_PARTS, LoraSettings

NEW_PARAMS = ("frame_embed", "clip_embed")


def attach_lora(vlm: nn.Module, lora: LoraSettings) -> None:
    """Insert LoRA layers into the parts that `lora` names (freshly initialised)."""
    if lora.qformer_parts:
        pattern = "(" + "|".join(QFORMER_LORA_PARTS[p] for p in lora.qformer_parts) + ")"
        cfg = LoraConfig(r=lora.qformer_r, lora_alpha=lora.qformer_alpha, lora_dropout=lora.dropout,
                         target_modules=pattern, bias="none")
        inject_adapter_in_model(cfg, vlm.base.qformer)
    if lora.llm_part:
        cfg = LoraConfig(r=lora.llm_r, lora_alpha=lora.llm_alpha, lora_dropout=lora.dropout,
                         target_modules=list(LLM_LORA_PARTS[lora.llm_part]), bias="none")
        inject_adapter_in_model(cfg, vlm.llm)


def set_trainable(vlm: nn.Module, lora: LoraSettings, new_params: tuple[str, ...] = ()) -> list[str]:
    """Freeze everything except the LoRA weights of the parts that train and the named new
    parameters; returns the names of the trainable parameters."""
    for p in vlm.parameters():
        p.requires_grad_(False)
    parts = {"base.qformer.": lora.train_qformer, "base.language_model.": lora.train_llm}
    names = []
    for name, p in vlm.named_parameters():
        is_lora = "lora_" in name and any(name.startswith(k) and on for k, on in parts.items())
        if is_lora or name in new_params:
            p.requires_grad_(True)
            names.append(name)
    return names


def adapter_state_dict(vlm: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights of both parts plus the model's new parameters."""
    state = {}
    for part, module in (("qformer", vlm.base.qformer), ("llm", vlm.llm)):
        if hasattr(module, "peft_config"):
            state.update({f"{part}.{k}": v for k, v in get_peft_model_state_dict(module).items()})
    state.update({k: getattr(vlm, k).detach() for k in NEW_PARAMS})
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def load_adapter_state_dict(vlm: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what `adapter_state_dict` saved into a model with the same LoRA layout.

    Raises ValueError naming the keys that do not fit."""
    expected = adapter_state_dict(vlm)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", wrong)) if keys)
        raise ValueError(f"the adapter weights do not fit this model ({detail})")
    for part, module in (("qformer.", vlm.base.qformer), ("llm.", vlm.llm)):
        sub = {k[len(part):]: v for k, v in state.items() if k.startswith(part)}
        if sub:
            set_peft_model_state_dict(module, sub)
    with torch.no_grad():
        for k in NEW_PARAMS:
            getattr(vlm, k).copy_(state[k])


@contextmanager
def without_llm_lora(vlm: nn.Module) -> Iterator[None]:
    """The LLM as it was before stage 2: a stage-2 model captions strokes like its stage 1."""
    layers = [m for m in vlm.llm.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
