from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.config import LoraSettings, ModelSettings
from core.loader import ModelLoadError, build_model, load_model, save_adapters
from core.tiny import TinySpec, build_tiny_base
from tests.conftest import random_clips

NUM_FRAMES = 4


def make(base, lora: LoraSettings | None = None, precision: str = "fp32", seed: int = 0):
    model = build_model(ModelSettings(base=str(base), num_frames=NUM_FRAMES, precision=precision,
                                      lora=lora or LoraSettings.experiment(3)))
    torch.manual_seed(seed)
    with torch.no_grad():  # LoRA B starts at zero; give every new weight a value so tests see them
        for name, p in model.vlm.named_parameters():
            if "lora_" in name or name in ("frame_embed", "clip_embed"):
                p.normal_(0, 0.2)
    return model


def test_shapes_one_clip_and_k_clips(tiny_base, tiny_spec):
    m = make(tiny_base)
    q = tiny_spec.num_query_tokens
    one = m.processor.caption_batch(random_clips(2))
    assert one["pixel_values"].shape == (2, NUM_FRAMES, 3, tiny_spec.image_size, tiny_spec.image_size)
    tokens = m.vlm.encode_clips(one["pixel_values"])
    assert tokens.shape == (2, q, tiny_spec.qformer_hidden)
    embeds, mask = m.vlm.llm_inputs(one["input_ids"], one["attention_mask"], one["pixel_values"])
    assert embeds.shape == (2, q + one["input_ids"].shape[1], tiny_spec.llm_width)

    k = m.processor.qa_batch([random_clips(5), random_clips(2, seed=1)], ["When is a smash hits?"] * 2)
    assert k["pixel_values"].shape[:3] == (2, 5, NUM_FRAMES)
    assert k["clip_mask"].tolist() == [[True] * 5, [True, True, False, False, False]]
    embeds, mask = m.vlm.llm_inputs(k["input_ids"], k["attention_mask"], k["pixel_values"], clip_mask=k["clip_mask"])
    assert embeds.shape[1] == 5 * q + k["input_ids"].shape[1]
    assert mask[1].sum() == 2 * q + k["attention_mask"][1].sum()  # padded clips are masked out
    assert mask[1, : int(mask[1].sum())].all()  # ... and moved behind every real token
    logits = m.vlm(**k, labels=m.processor.labels(["The event happens at stroke 1"] * 2)).logits
    assert logits.shape[0] == 2 and logits.shape[-1] >= len(m.tokenizer)


def _lora_count(r: int, pairs) -> int:
    return sum(r * (i + o) for i, o in pairs)


@pytest.mark.parametrize("lora, new_params", [
    (LoraSettings.experiment(1), ("frame_embed",)),
    (LoraSettings.experiment(4), ("frame_embed",)),
    (LoraSettings(qformer_parts=("self_attn_qv", "self_attn_out", "ffn"), qformer_r=2), ()),
    (LoraSettings(llm_part="all", llm_r=4), ("clip_embed",)),
    (LoraSettings(qformer_parts=("cross_attn",), qformer_r=2, llm_part="attn", train_qformer=False), ("clip_embed",)),
])
def test_only_the_chosen_lora_trains(tiny_base, tiny_spec, lora, new_params):
    from core.lora import set_trainable

    s = tiny_spec
    m = make(tiny_base, lora)
    trainable = set(set_trainable(m.vlm, lora, new_params))
    dq, dv, d, ff, inner = s.qformer_hidden, s.vision_hidden, s.llm_width, s.llm_ffn, s.llm_width
    per_layer = {  # (in, out) of every Linear a Q-Former part targets, in one layer
        "cross_attn": [(dq, dq), (dv, dq), (dv, dq), (dq, dq)],
        "self_attn_qv": [(dq, dq), (dq, dq)],
        "self_attn_out": [(dq, dq)],
        "ffn": [(dq, 2 * dq), (2 * dq, dq), (dq, 2 * dq), (2 * dq, dq)],
    }
    expected = 0
    if lora.train_qformer:
        expected += s.qformer_layers * sum(_lora_count(lora.qformer_r, per_layer[p]) for p in lora.qformer_parts)
    if lora.llm_part == "all":  # gated T5: wi_0, wi_1, wo; q, v in self- and cross-attention
        ffn = [(d, ff), (d, ff), (ff, d)]
        expected += s.llm_layers * _lora_count(lora.llm_r, [(d, inner)] * 2 + ffn)  # encoder
        expected += s.llm_layers * _lora_count(lora.llm_r, [(d, inner)] * 4 + ffn)  # decoder
    if lora.llm_part == "attn":
        expected += s.llm_layers * _lora_count(lora.llm_r, [(d, inner)] * 6)
    expected += NUM_FRAMES * dv if "frame_embed" in new_params else 0
    expected += 16 * d if "clip_embed" in new_params else 0
    params = dict(m.vlm.named_parameters())
    assert sum(params[n].numel() for n in trainable) == expected

    m.vlm.train()
    batch = m.processor.qa_batch([random_clips(3), random_clips(1, seed=2)], ["When is a smash hits?"] * 2)
    loss = m.vlm(**batch, labels=m.processor.labels(["The event happens at strokes 0,2"] * 2)).loss
    assert torch.isfinite(loss)
    loss.backward()
    got_grad = {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    # The last Q-Former layer's text-branch FFN feeds nothing (only query outputs are used).
    last = s.qformer_layers - 1
    dead = {n for n in trainable if f"qformer.encoder.layer.{last}.intermediate.dense" in n
            or f"qformer.encoder.layer.{last}.output.dense" in n}
    assert got_grad == trainable - dead


def test_padding_does_not_change_the_answer(tiny_base):
    m = make(tiny_base, LoraSettings(qformer_parts=("cross_attn",), llm_part="all"))
    clips = random_clips(3, seed=5)
    question = "When does the upper player hits a smash?"
    labels = m.processor.labels(["The event happens at strokes 0,2"])
    b3 = m.processor.qa_batch([clips], [question])
    b5 = {k: v.clone() for k, v in b3.items()}
    b5["pixel_values"] = torch.cat([b3["pixel_values"], torch.randn(1, 2, *b3["pixel_values"].shape[2:])], dim=1)
    b5["clip_mask"] = torch.tensor([[True, True, True, False, False]])
    with torch.no_grad():
        l3 = m.vlm(**b3, labels=labels).logits
        l5 = m.vlm(**b5, labels=labels).logits
    # float32 sums over 3 and 5 key positions differ in their last bits (up to 1.3e-5 seen on one
    # CPU); a padding clip that leaked into the answer moves logits by orders of magnitude more
    torch.testing.assert_close(l3, l5, atol=1e-4, rtol=1e-4)
    # and in a batch with a longer chunk beside it
    batch = m.processor.qa_batch([clips, random_clips(5, seed=9)], [question, question])
    with torch.no_grad():
        lb = m.vlm(**batch, labels=labels.repeat(2, 1)).logits
    torch.testing.assert_close(lb[:1], l3, atol=1e-4, rtol=1e-4)


def test_cached_tokens_give_the_same_output(tiny_base):
    m = make(tiny_base)
    b = m.processor.qa_batch([random_clips(4, seed=3)], ["When is a clear hits?"])
    with torch.no_grad():
        tokens = m.vlm.encode_clips(b["pixel_values"][0])[None]
        direct = m.vlm(**b, labels=m.processor.labels(["x"])).logits
        cached = m.vlm(b["input_ids"], b["attention_mask"], clip_tokens=tokens, labels=m.processor.labels(["x"])).logits
    torch.testing.assert_close(direct, cached)


def test_save_load_round_trip_and_refusals(tiny_base, tmp_path):
    m = make(tiny_base, LoraSettings(qformer_parts=("cross_attn",), qformer_r=2, llm_part="attn"), seed=7)
    m.stage = 2
    run = save_adapters(m, tmp_path / "run")
    loaded = load_model(run)
    assert loaded.stage == 2 and loaded.settings.lora == m.settings.lora
    b = m.processor.qa_batch([random_clips(2, seed=4)], ["When is a smash hits?"])
    labels = m.processor.labels(["The event happens at stroke 1"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.vlm(**b, labels=labels).logits, m.vlm(**b, labels=labels).logits)
        fresh = make(tiny_base, m.settings.lora, seed=8)
        assert not torch.allclose(fresh.vlm(**b, labels=labels).logits, m.vlm(**b, labels=labels).logits)

    other = build_tiny_base(tmp_path / "other_base", TinySpec(llm_width=48, vision_hidden=48))
    with pytest.raises(ModelLoadError, match="differs from .*llm_width: adapters 32 vs base 48"):
        load_model(run, base=str(other))

    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(ModelLoadError, match="not a stroke-model manifest"):
        load_model(run)
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "adapters.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="adapters.safetensors is missing"):
        load_model(run)
    with pytest.raises(ModelLoadError, match="no manifest.json"):
        load_model(tmp_path)


def test_adapters_of_another_lora_layout_are_refused(tiny_base, tmp_path):
    run = save_adapters(make(tiny_base, LoraSettings.experiment(1)), tmp_path / "r1")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["lora"]["qformer_r"] = 8  # the manifest now lies about the weights
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="do not fit this model.*wrong shape"):
        load_model(run)


def test_damaged_weights_name_the_file(tiny_base, tmp_path):
    import shutil

    run = save_adapters(make(tiny_base, LoraSettings.experiment(1)), tmp_path / "run")
    good = (run / "adapters.safetensors").read_bytes()
    for damaged in (b"", b"not weights at all", good[: len(good) // 2]):
        (run / "adapters.safetensors").write_bytes(damaged)
        with pytest.raises(ModelLoadError, match=r"adapters\.safetensors: .*damaged"):
            load_model(run)
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: the base weights cannot be read"):
        build_model(ModelSettings(base=str(base)))


def test_missing_base_gives_a_clear_message(tmp_path):
    with pytest.raises(ModelLoadError, match="never downloads"):
        build_model(ModelSettings(base="Salesforce/instructblip-flan-t5-xl-not-cached"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a complete InstructBLIP checkpoint"):
        build_model(ModelSettings(base=str(tmp_path / "empty")))


def test_bf16_and_int8_run_on_cpu_and_int8_stays_close(tiny_base):
    b = None
    logits = {}
    for precision in ("fp32", "bf16", "int8"):
        m = make(tiny_base, precision=precision, seed=1)
        b = b or m.processor.qa_batch([random_clips(2, seed=6)], ["When is a lob hits?"])
        labels = m.processor.labels(["The event does not occur"])
        with torch.no_grad():
            logits[precision] = m.vlm(**b, labels=labels).logits.float()
        assert torch.isfinite(logits[precision]).all()
    if precision == "int8":
        import bitsandbytes as bnb

        assert any(isinstance(mod, bnb.nn.Linear8bitLt) for mod in m.vlm.llm.modules())
    ref = logits["fp32"]
    for precision in ("bf16", "int8"):
        rel = (logits[precision] - ref).norm() / ref.norm()
        assert rel < 0.05, f"{precision} logits differ from fp32 by {rel:.3f}"


def test_generation_settings_bound_the_length(tiny_base):
    from core.config import GenerationSettings

    m = make(tiny_base)
    b = m.processor.caption_batch(random_clips(2))
    ids = m.vlm.generate(**b, settings=GenerationSettings(num_beams=3, max_new_tokens=7, min_new_tokens=5))
    assert 6 <= ids.shape[1] <= 8  # decoder start token + 5..7 new tokens
    assert len(m.processor.decode(ids)) == 2


def test_a_stroke_pretrained_base_brings_its_embeddings(tiny_base, tmp_path):
    import shutil

    from core.loader import save_stroke_embeddings

    m = make(tiny_base)
    folder = Path(shutil.copytree(tiny_base, tmp_path / "pretrained"))
    save_stroke_embeddings(m.vlm, folder)
    again = build_model(ModelSettings(base=str(folder), num_frames=NUM_FRAMES))
    torch.testing.assert_close(again.vlm.frame_embed, m.vlm.frame_embed)
    assert build_model(ModelSettings(base=str(tiny_base), num_frames=NUM_FRAMES)).vlm.frame_embed.abs().sum() == 0
    with pytest.raises(ModelLoadError, match="frame_embed has shape"):
        build_model(ModelSettings(base=str(folder), num_frames=NUM_FRAMES + 1))


def test_a_tubelet_embedding_starts_as_the_plain_tower_and_reads_each_clips_own_frames(tiny_base, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from core.loader import STROKE_EMBEDDINGS, TUBELET, save_stroke_embeddings

    folder = Path(shutil.copytree(tiny_base, tmp_path / "tubelet"))
    spec = build_model(ModelSettings(base=str(tiny_base), num_frames=NUM_FRAMES)).vlm.base.config.vision_config
    save_file({TUBELET: torch.zeros(spec.hidden_size, 3, 3, spec.patch_size, spec.patch_size)},
              str(folder / STROKE_EMBEDDINGS))
    plain, tube = (build_model(ModelSettings(base=str(f), num_frames=NUM_FRAMES)) for f in (tiny_base, folder))
    assert plain.vlm.tubelet is None and tube.vlm.tubelet.kernel_size == (3, spec.patch_size, spec.patch_size)
    clips = torch.randn(3, NUM_FRAMES, 3, spec.image_size, spec.image_size)
    torch.testing.assert_close(tube.encode(clips), plain.encode(clips))  # zero: plain InstructBLIP
    with torch.no_grad():
        tube.vlm.tubelet.weight.normal_(0, 0.5)
    tokens = tube.encode(clips)
    assert not torch.allclose(tokens, plain.encode(clips), atol=1e-4)
    torch.testing.assert_close(tube.encode(clips[1:2]), tokens[1:2])  # a clip alone reads as in a batch
    changed = clips.clone()
    changed[0, -1] += 1.0  # one frame of clip 0
    moved = tube.encode(changed)
    torch.testing.assert_close(moved[1:], tokens[1:])
    assert not torch.allclose(moved[0], tokens[0])
    save_stroke_embeddings(tube.vlm, folder)  # what base pretraining writes
    assert load_file(str(folder / STROKE_EMBEDDINGS))[TUBELET].abs().sum() > 0
    torch.testing.assert_close(build_model(ModelSettings(base=str(folder), num_frames=NUM_FRAMES)).encode(clips), tokens)


def test_frames_are_resized_whole_or_centre_cropped():
    import numpy as np

    from core.processor import ImageSpec, clip_tensor

    frames = np.zeros((16, 90, 160, 3), np.uint8)
    frames[:, :, :20] = 255  # a white band at the left edge
    spec = dict(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    whole = clip_tensor(frames, ImageSpec(**spec, crop=False), 4)
    cropped = clip_tensor(frames, ImageSpec(**spec, crop=True), 4)
    assert whole.shape == cropped.shape == (4, 3, 32, 32)
    assert whole[..., 0].mean() > 0.9  # the band survives a whole-frame resize ...
    assert cropped.max() == 0  # ... and is cut by the centre crop


def test_motion_channels_show_what_moved_and_survive_the_config_file(tmp_path):
    import numpy as np

    from core.processor import ImageSpec, clip_tensor

    frames = np.full((4, 32, 32, 3), 60, np.uint8)
    for t in range(4):
        frames[t, 10, 4 + 8 * t] = 255  # a bright dot moving right by 8 px per frame
    frames[:, 20:24, 20:24] = 200  # a static block
    spec = ImageSpec(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop=False, motion=True)
    x = clip_tensor(frames, spec, 4)  # (T, 3, S, S): grey, grey - previous, next - grey
    assert x.shape == (4, 3, 32, 32)
    assert x[1, 1, 10, 12] > 0.7 and x[1, 1, 10, 4] < -0.7  # arrived here, left there
    assert x[1, 2, 10, 12] < -0.7 and x[1, 2, 10, 20] > 0.7  # leaves here, arrives next
    assert x[:, 1:, 20:24, 20:24].abs().max() == 0  # nothing static shows as motion
    assert x[0, 1].abs().max() == 0 and x[3, 2].abs().max() == 0  # clip edges have no neighbour
    assert x[2, 0, 22, 22] == pytest.approx(200 / 255, abs=1e-3)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(ImageSpec.motion_channels(32).to_dict()))
    assert ImageSpec.from_file(tmp_path / "preprocessor_config.json") == ImageSpec.motion_channels(32)
    assert ImageSpec.from_file(tmp_path / "preprocessor_config.json").motion


def test_tiny_base_queries_are_not_symmetric(tiny_base):
    m = make(tiny_base)
    out = m.vlm.encode_clips(m.processor.caption_batch(random_clips(1))["pixel_values"])[0]
    assert (out[0] - out[1:]).abs().amax() > 1e-3  # each query reads the clip differently


def test_a_stage2_model_captions_like_its_stage1(tiny_base):
    from core.lora import attach_lora, without_llm_lora

    m = make(tiny_base, LoraSettings.experiment(2))
    b = m.processor.caption_batch(random_clips(2))
    labels = m.processor.labels(["upper player hits a smash in the backcourt"] * 2)
    with torch.no_grad():
        stage1 = m.vlm(**b, labels=labels).logits
        attach_lora(m.vlm, LoraSettings(llm_part="all"))
        for name, p in m.vlm.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
        stage2 = m.vlm(**b, labels=labels).logits
        with without_llm_lora(m.vlm):
            torch.testing.assert_close(m.vlm(**b, labels=labels).logits, stage1)
        torch.testing.assert_close(m.vlm(**b, labels=labels).logits, stage2)  # restored afterwards
    assert not torch.allclose(stage1, stage2)


def test_a_model_shipped_with_its_base_loads_from_anywhere(tiny_base, tmp_path, monkeypatch):
    import shutil

    run = save_adapters(make(tiny_base), tmp_path / "shipped")
    shutil.copytree(tiny_base, run / "base")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "base_model": "base"}))
    monkeypatch.chdir(tmp_path.parent)  # not the folder the model lives in
    assert Path(load_model(run).settings.base) == (run / "base").resolve()


def test_the_shortest_caption_is_the_bases_own_unless_given(tiny_base):
    from core.config import GenerationSettings

    m = make(tiny_base)
    seen = {}
    m.vlm.base.language_model.generate = lambda **kw: seen.update(kw) or torch.zeros(1, 1, dtype=torch.long)
    batch = m.processor.caption_batch(random_clips(1))

    def floor(settings=None) -> int:
        m.vlm.generate(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"],
                       settings=settings)
        return seen["min_new_tokens"]

    assert floor() == 1  # a tiny base's word-level tokens: its generation_config.json says 1
    m.vlm.base.generation_config.min_new_tokens = None
    assert floor() == 10  # a base without its own floor gets the reference's
    assert floor(GenerationSettings(min_new_tokens=3)) == 3


def test_a_stage2_model_loads_as_its_stage1_captioner_for_fine_tuning(tiny_base, tmp_path):
    m = make(tiny_base, LoraSettings(qformer_parts=("cross_attn",), qformer_r=2, llm_part="attn"), seed=5)
    m.stage = 2
    save_adapters(m, tmp_path / "stage2")
    captioner = load_model(tmp_path / "stage2", stage1=True)
    assert captioner.stage == 1 and captioner.settings.lora.llm_part is None
    assert not any("lora_" in n for n, _ in captioner.vlm.llm.named_parameters())  # the LLM LoRA is left out
    tokens = m.encode(m.processor.clips(random_clips(2, seed=1)))
    torch.testing.assert_close(captioner.encode(captioner.processor.clips(random_clips(2, seed=1))), tokens)
    assert captioner.caption(tokens) == m.caption(tokens)  # a stage-2 model captions as its stage 1
