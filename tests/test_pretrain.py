"""Base pretraining through the recipes' training loop: checkpoints, exact resume, device option."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.tiny import TinySpec
from train import pretrain_base
from train.clip_cache import ClipOrder, cut_set
from train.loop import TrainError
from train.pretrain_base import METRICS, Phase, PretrainConfig, pretrain
from train.replay import render_set

SET_CSV = (Path(__file__).resolve().parent / "data" / "shuttleset" /
           "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals" / "set1.csv")
SPEC = TinySpec(image_size=32, patch_size=8, vision_hidden=32, qformer_hidden=32, num_query_tokens=4,
                llm_width=32, llm_ffn=64)
NEVER = 1e6  # minutes: the phases end by their steps, so two runs can be compared step for step
CFG = PretrainConfig(spec=SPEC, num_frames=4, batch_size=8, lr_a=3e-3, lr_b=3e-3, lr_c=3e-3, warmup=2, steps_a=4,
                     steps_b=6, steps_c=6, minutes_a=NEVER, minutes_b=NEVER, minutes_c=NEVER, eval_every=3,
                     eval_limit=8, heads_b=1.0, save_every=2, device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    rendered = render_set(SET_CSV, tmp_path_factory.mktemp("renders"), rallies="1-8", seed=3, size=(96, 54))
    return cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)


@pytest.fixture(scope="module")
def whole(clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    pretrain(clips, clips, out, CFG)
    return out


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS).read_text().splitlines()]


def interrupt_at(monkeypatch, phase: str, step: int) -> None:
    """Stop the run (as Ctrl-C would) when `phase` is about to take step `step`."""
    real = Phase.accumulate

    def accumulate(self, batches, k):
        if self.phase == phase and self.step + 1 == step:
            raise KeyboardInterrupt
        return real(self, batches, k)
    monkeypatch.setattr(Phase, "accumulate", accumulate)


def test_interrupted_pretraining_resumes_to_the_uninterrupted_weights(clips, whole, tmp_path, monkeypatch):
    out = tmp_path / "base"
    with monkeypatch.context() as m:  # in phase B after its checkpoint at step 4
        interrupt_at(m, "B", 6)
        with pytest.raises(KeyboardInterrupt):
            pretrain(clips, clips, out, CFG)
    kept = sorted(str(p.relative_to(out)) for p in (out / "checkpoints").glob("*/step-*"))
    assert kept == ["checkpoints/A/step-4", "checkpoints/B/step-4"]  # each phase's newest (keep_checkpoints 1)
    assert [(r["phase"], r["step"]) for r in records(out)][-1] == ("B", 3)
    with monkeypatch.context() as m:  # resumed, then stopped again in phase C before its first checkpoint
        interrupt_at(m, "C", 2)
        with pytest.raises(KeyboardInterrupt):
            pretrain(clips, clips, out, replace(CFG, resume=True))
    summary = pretrain(clips, clips, out, replace(CFG, resume=True))

    assert (summary["steps_a"], summary["steps_b"], summary["steps_c"]) == (4, 6, 6)
    for name in ("model.safetensors", "stroke_embeddings.safetensors"):
        a, b = load_file(whole / name), load_file(out / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    ra, rb = records(whole), records(out)
    assert [(r["phase"], r["step"]) for r in rb] == [(r["phase"], r["step"]) for r in ra]
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6) and x["lr"] == pytest.approx(y["lr"])
        assert {k: v for k, v in x.items() if "_" in k and k[0] in "ht"} == \
               {k: v for k, v in y.items() if "_" in k and k[0] in "ht"}  # heldout_* / train_* scores
    assert not (out / "checkpoints").exists()  # the written base replaces them


def test_phases_log_steps_and_scores_and_decay_over_their_steps(whole):
    rows = records(whole)
    assert [(r["phase"], r["step"]) for r in rows] == [("A", 1), ("A", 3), ("A", 4), ("B", 1), ("B", 3), ("B", 6),
                                                      ("C", 1), ("C", 3), ("C", 6)]
    assert all(r["clips_per_s"] > 0 and np.isfinite(r["loss"]) for r in rows)
    # warm-up over 2 steps, then a cosine over the other 4 of phase B's 6: step 6 is 3/4 down the cosine
    lr_b = [r["lr"] for r in rows if r["phase"] == "B"]
    assert lr_b == pytest.approx([1.5e-3, 3e-3, 3e-3 * 0.5 * (1 + math.cos(0.75 * math.pi))])
    assert {"heldout_side", "train_zone"} <= set(rows[2]) and {"heldout_f1", "train_impossible"} <= set(rows[-1])


def test_a_phase_ended_by_its_minutes_stays_ended_on_resume(clips, tmp_path, monkeypatch):
    out = tmp_path / "base"
    cfg = replace(CFG, steps_a=50, minutes_a=1e-6, steps_c=0)
    with monkeypatch.context() as m:
        interrupt_at(m, "B", 3)
        with pytest.raises(KeyboardInterrupt):
            pretrain(clips, None, out, cfg)
    assert [r["step"] for r in records(out) if r["phase"] == "A"] == [1]  # out of time after one step
    summary = pretrain(clips, None, out, replace(cfg, resume=True))
    assert (summary["steps_a"], summary["steps_b"]) == (1, 6)


def test_resume_refuses_other_options(clips, tmp_path, monkeypatch):
    out = tmp_path / "base"
    cfg = replace(CFG, steps_b=2, steps_c=0)
    with monkeypatch.context() as m:
        interrupt_at(m, "B", 1)
        with pytest.raises(KeyboardInterrupt):
            pretrain(clips, None, out, cfg)
    with pytest.raises(TrainError, match=r"lr_a \(0.003 -> 0.001\)"):
        pretrain(clips, None, out, replace(cfg, resume=True, lr_a=1e-3))


def test_device_comes_from_the_config(clips, tmp_path, monkeypatch):
    assert PretrainConfig().device == "auto"
    args = pretrain_base.parser().parse_args(["--renders", "r", "--out", "o", "--device", "cpu", "--resume"])
    assert args.device == "cpu" and args.resume is True
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="no CUDA GPU"):
            pretrain(clips, None, tmp_path / "gpu", replace(CFG, device="cuda"))
    seen = []
    real = pretrain_base.build_model
    monkeypatch.setattr(pretrain_base, "build_model", lambda settings: seen.append(settings.device) or real(settings))
    pretrain(clips, None, tmp_path / "b", replace(CFG, device="auto", steps_a=1, steps_b=0, steps_c=0))
    assert seen == ["auto"]


def test_clip_order_is_the_epochs_permutation_in_full_sorted_batches():
    order = ClipOrder(10, 3, seed=5)
    rng = np.random.default_rng(5)
    perms = [rng.permutation(10) for _ in range(3)]
    for e in (0, 2, 1):  # any epoch, in any order
        assert [b.tolist() for b in order.epoch(e)] == [sorted(perms[e][i:i + 3]) for i in (0, 3, 6)]
    assert [len(b) for b in ClipOrder(2, 3).epoch(0)] == [2]  # fewer clips than a batch: all of them
