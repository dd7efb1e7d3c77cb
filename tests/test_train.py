"""Training recipes end to end on a tiny model and a tiny synthetic dataset (CPU, seconds each)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.config import ModelSettings
from core.loader import build_model, load_model
from core.prompts import parse_answer
from core.video import write_video
from core.vocab import caption
from train import build_dataset as bd
from train import evaluate, stage1, stage2
from train.config import ConfigError, Stage1Config, Stage2Config, parse_config
from train.data import EpochBatchSampler
from train.loop import lr_factor

FAST = ["--num-frames", "4", "--batch-size", "2", "--num-workers", "0", "--lr", "1e-3", "--warmup-steps", "0",
        "--log-every", "1", "--save-every", "1", "--eval-limit", "2", "--num-beams", "2", "--max-new-tokens", "6",
        "--min-new-tokens", "1", "--progress", "false", "--device", "cpu", "--seed", "3"]


@dataclass
class FakeStroke:
    """What the dataset builder needs of a stroke (core.annotations.Stroke's fields)."""

    stroke_id: str
    match: str
    set: int
    rally: int
    ball_round: int
    frame: int
    side: str
    stroke: str
    zone: int

    @property
    def caption(self) -> str:
        return caption(self.side, self.stroke, self.zone)


def make_dataset(root: Path) -> Path:
    """12 strokes in 3 rallies (2 train matches, 1 val match), written with the builder's own writers."""
    events = [("upper", "smash", 9), ("bottom", "lob", 7), ("upper", "clear", 3), ("bottom", "drop", 1)]
    strokes, split_of = [], {}
    for r, (match, split) in enumerate([("m1", "train"), ("m2", "train"), ("m3", "val")]):
        for b in range(4):
            side, stroke, zone = events[(b + r) % 4]
            s = FakeStroke(f"{match}_1_{100 * b + 10}", match, 1, r + 1, b + 1, 100 * b + 10, side, stroke, zone)
            strokes.append(s)
            split_of[s.stroke_id] = split
    rng = np.random.default_rng(0)
    for s in strokes:
        write_video(root / "clips" / f"{s.stroke_id}.mp4", rng.integers(0, 255, (6, 40, 48, 3), dtype=np.uint8), 25)
    captions = bd.caption_files(strokes, split_of)
    for split, items in captions.items():
        bd.write_json(root / f"{split}.json", items)
        if split != "train":
            bd.write_json(root / f"{split}_gt.json", bd.coco_gt(items))
    qa, _ = bd.qa_files(strokes, split_of, 5, False, 42, 0.0, progress=False)
    for split, items in qa.items():
        bd.write_json(root / f"qa_{split}.json", items)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, tiny_base, dataset) -> Path:
    out = tmp_path_factory.mktemp("runs") / "s1"
    assert stage1.main(["--base", str(tiny_base), "--data", str(dataset), "--out", str(out),
                        "--max-steps", "2", "--experiment", "3", *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def stage2_run(tmp_path_factory, stage1_run, dataset) -> Path:
    out = tmp_path_factory.mktemp("runs") / "s2"
    assert stage2.main(["--init", str(stage1_run), "--data", str(dataset), "--out", str(out),
                        "--max-steps", "2", "--grad-accum", "2", *_fast2()]) == 0
    return out


def _fast2() -> list[str]:
    """FAST without --num-frames (stage 2 takes the stage-1 model's)."""
    i = FAST.index("--num-frames")
    return FAST[:i] + FAST[i + 2:]


def metrics_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- stage 1


def test_stage1_trains_only_the_qformer_lora_and_frame_embedding(stage1_run, tiny_base):
    for sub in ("config.yaml", "metrics.jsonl", "train.log", "checkpoints/step-1/trainer_state.pt",
                "checkpoints/step-2/adapters.safetensors", "best/manifest.json", "final/manifest.json"):
        assert (stage1_run / sub).is_file(), sub
    lines = metrics_lines(stage1_run)
    assert [r["step"] for r in lines] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 and r["samples_per_s"] > 0 for r in lines)
    assert "val_cider" in lines[-1] and "val_acc_stroke" in lines[-1]

    trained = load_model(stage1_run / "final")
    assert trained.stage == 1 and trained.settings.lora.qformer_r == 4 and trained.settings.lora.llm_part is None
    fresh = build_model(ModelSettings(base=str(tiny_base), num_frames=4, lora=trained.settings.lora))
    before, after = fresh.vlm.state_dict(), trained.vlm.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in after if "lora_A" not in k and not torch.equal(before[k], after[k])}
    assert "frame_embed" in changed
    assert all(k == "frame_embed" or (k.startswith("base.qformer.") and "lora_B" in k) for k in changed), changed
    assert not any("language_model" in k and "lora" in k for k in after)  # no LLM LoRA in stage 1


def test_tiny_base_and_resume_reach_the_same_weights(tmp_path, dataset):
    common = ["--tiny", "--data", str(dataset), "--grad-accum", "2", *FAST]
    # 8 train clips, batch 2, 2 micro-batches per step: 2 steps per epoch; 5 steps cross two epoch ends
    assert stage1.main(["--out", str(tmp_path / "a"), "--max-steps", "5", *common]) == 0
    assert (tmp_path / "a" / "tiny-base" / "config.json").is_file()
    assert stage1.main(["--out", str(tmp_path / "b"), "--max-steps", "3", *common]) == 0
    assert stage1.main(["--out", str(tmp_path / "b"), "--max-steps", "5", "--resume", *common]) == 0

    a, b = (load_file(str(tmp_path / r / "final" / "adapters.safetensors")) for r in ("a", "b"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    la, lb = metrics_lines(tmp_path / "a"), metrics_lines(tmp_path / "b")
    assert [r["step"] for r in lb] == [1, 2, 3, 4, 5]
    for ra, rb in zip(la, lb):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-6) and ra["lr"] == pytest.approx(rb["lr"])
    state = torch.load(tmp_path / "b" / "checkpoints" / "step-5" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 5
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-3", "step-4", "step-5"]

    with pytest.raises(SystemExit):  # resuming with another batch size would change the data order
        stage1.main(["--out", str(tmp_path / "b"), "--max-steps", "6", "--resume", *common, "--batch-size", "4"])


# ---------------------------------------------------------------- stage 2


def test_stage2_adds_an_llm_lora_on_top_of_stage1(stage1_run, stage2_run):
    manifest = json.loads((stage2_run / "final" / "manifest.json").read_text())
    assert manifest["stage"] == 2
    lora = manifest["lora"]
    assert lora["qformer_parts"] == ["cross_attn"] and lora["qformer_r"] == 4
    assert lora["llm_part"] == "all" and lora["llm_r"] == 4 and lora["llm_alpha"] == 8
    assert lora["train_qformer"] is False
    lines = metrics_lines(stage2_run)
    assert [r["step"] for r in lines] == [1, 2] and "val_f1" in lines[-1] and np.isfinite(lines[-1]["loss"])

    s1 = load_file(str(stage1_run / "best" / "adapters.safetensors"))
    s2 = load_file(str(stage2_run / "final" / "adapters.safetensors"))
    for k, v in s1.items():  # the Q-Former LoRA and the frame embedding stay as stage 1 left them
        assert k == "clip_embed" or torch.equal(v, s2[k]), k
    assert any(k.startswith("llm.") and "lora_B" in k and s2[k].abs().sum() > 0 for k in s2)
    assert s2["clip_embed"].abs().sum() > 0
    model = load_model(stage2_run / "best")
    assert model.stage == 2 and model.settings.lora.llm_part == "all"


def test_stage2_resume_reaches_the_same_weights_without_new_clip_tags(stage1_run, dataset, tmp_path, monkeypatch):
    calls = []
    real = stage2.tag_clips
    monkeypatch.setattr(stage2, "tag_clips", lambda *a, **k: calls.append(1) or real(*a, **k))
    common = ["--init", str(stage1_run), "--data", str(dataset), *_fast2()]
    assert stage2.main(["--out", str(tmp_path / "a"), "--max-steps", "4", *common]) == 0
    assert stage2.main(["--out", str(tmp_path / "b"), "--max-steps", "2", *common]) == 0
    assert len(calls) == 2
    # the resumed run takes its clip tags from the checkpoint instead of computing them again
    assert stage2.main(["--out", str(tmp_path / "b"), "--max-steps", "4", "--resume", *common]) == 0
    assert len(calls) == 2
    a, b = (load_file(str(tmp_path / r / "final" / "adapters.safetensors")) for r in ("a", "b"))
    assert a.keys() == b.keys() and a["clip_embed"].abs().sum() > 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_stage2_starts_clips_from_orthogonal_tags_as_long_as_a_query_token(stage1_run, dataset):
    from train.data import ClipReader

    model = load_model(stage1_run / "best", device="cpu")
    before = model.vlm.clip_embed.detach().clone()
    assert before[1:].abs().max() == 0  # stage 1 feeds one clip: only tag 0 is ever used
    clips = ClipReader(dataset, model.processor.image, model.settings.num_frames)
    paths = [it["image"] for it in json.loads((dataset / "train.json").read_text())][:4]
    norm = stage2.tag_clips(model, clips, paths, seed=0)
    with torch.no_grad():
        tokens = model.vlm.encode_clips(torch.stack([clips(p) for p in paths]))
        expected = model.vlm.base.language_projection(tokens).norm(dim=-1).mean().item()
    assert norm == pytest.approx(expected, rel=1e-5)
    tags = model.vlm.clip_embed.detach()
    assert torch.equal(tags[0], before[0])
    gram = tags[1:] @ tags[1:].T
    assert torch.allclose(gram, torch.eye(len(gram)) * norm ** 2, atol=1e-4 * norm ** 2)
    assert stage2.tag_clips(model, clips, paths, seed=1) is None  # trained tags are kept
    assert torch.equal(model.vlm.clip_embed.detach(), tags)


def test_stage2_tag_sample_takes_distinct_clips_across_questions():
    # 14 questions share each chunk's 5 clips: the sample must reach past the first chunks' questions
    items = [{"image": [f"c{chunk}_{i}.mp4" for i in range(5)]} for chunk in range(20) for _ in range(14)]
    sample = stage2.tag_sample(items, count=12)
    assert sample == [f"c{chunk}_{i}.mp4" for chunk in range(3) for i in range(5)][:12]
    assert stage2.tag_sample(items[:3], count=12) == [f"c0_{i}.mp4" for i in range(5)]  # fewer clips than asked


# ---------------------------------------------------------------- evaluation


def test_stage2_negative_share_repeats_the_impossible_questions(stage1_run, dataset, tmp_path):
    from train.data import load_questions

    given = load_questions(dataset, "train")
    cfg = parse_config(Stage2Config, ["--init", str(stage1_run), "--data", str(dataset), "--out", str(tmp_path / "s2"),
                                      "--negative-share", "0.6", *_fast2()], "p", "d")
    items = stage2.setup(cfg).train_set.items
    share = sum(it["is_impossible"] for it in items) / len(items)
    assert sum(it["is_impossible"] for it in given) / len(given) < 0.5
    assert abs(share - 0.6) < 0.05 and items[: len(given)] == given


def test_evaluate_writes_a_report_with_every_metric(stage1_run, stage2_run, dataset, capsys):
    assert evaluate.main(["--run", str(stage1_run), "--data", str(dataset), "--limit", "3", "--num-beams", "2",
                          "--max-new-tokens", "6", "--min-new-tokens", "1", "--no-progress"]) == 0
    report = json.loads((stage1_run / "eval_val.json").read_text())
    m = report["metrics"]
    assert {"n", "bleu4", "cider", "exact_match", "parsed", "field_accuracy"} <= m.keys()
    assert set(m["field_accuracy"]) == {"side", "stroke", "zone", "all_fields", "mean"}
    assert set(report["majority_baseline"]) == {"side", "stroke", "zone"}
    assert report["adapters"].endswith("best") and len(report["samples"]) == m["n"] == 3
    assert isinstance(report["confusion_stroke"], dict)
    assert "CIDEr-D" in capsys.readouterr().out

    assert evaluate.main(["--run", str(stage2_run / "final"), "--data", str(dataset), "--limit", "6",
                          "--num-beams", "1", "--max-new-tokens", "8", "--no-progress"]) == 0
    report = json.loads((stage2_run / "eval_val.json").read_text())
    m = report["metrics"]
    keys = {"hit1", "exact", "precision", "recall", "f1", "impossible_accuracy", "accuracy", "n_answerable",
            "n_impossible", "by_kind"}
    assert keys <= m.keys() and m["n"] == 6
    assert all(keys - {"by_kind"} <= k.keys() for k in m["by_kind"].values())
    assert "Hit@1" in capsys.readouterr().out


# ---------------------------------------------------------------- errors before training


def error_of(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_clear_errors_before_training(tmp_path, tiny_base, dataset, capsys):
    base = ["--base", str(tiny_base), *FAST]
    err = error_of(stage1.main, ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r1"), *base], capsys)
    assert "data folder" in err and "does not exist" in err

    (tmp_path / "file").write_text("x")
    err = error_of(stage1.main, ["--data", str(dataset), "--out", str(tmp_path / "file" / "run"), *base], capsys)
    assert "not writable" in err

    broken = tmp_path / "broken"
    make_dataset(broken)
    (broken / "clips" / "m1_1_10.mp4").unlink()
    err = error_of(stage1.main, ["--data", str(broken), "--out", str(tmp_path / "r2"), *base], capsys)
    assert "clip file(s) of train.json are missing" in err and "m1_1_10.mp4" in err

    (broken / "val.json").write_text("[{\"caption\": 1}")
    (broken / "clips" / "m1_1_10.mp4").write_bytes(b"")
    err = error_of(stage1.main, ["--data", str(broken), "--out", str(tmp_path / "r3"), *base], capsys)
    assert "val.json: not valid JSON" in err

    err = error_of(stage1.main, ["--data", str(dataset), "--out", str(tmp_path / "r4"), "--base",
                                 str(tmp_path / "no-such-base"), *FAST], capsys)
    assert "no-such-base" in err and "never downloads" in err

    err = error_of(stage1.main, ["--data", str(dataset), "--out", str(tmp_path / "r5"), *FAST], capsys)
    assert "--base" in err
    err = error_of(stage2.main, ["--data", str(dataset), "--out", str(tmp_path / "r6"), *_fast2()], capsys)
    assert "--init" in err
    assert not (tmp_path / "r1" / "checkpoints").exists()


# ---------------------------------------------------------------- configuration


def test_yaml_then_command_line_precedence(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("# comment\nlr: 1e-3\nepochs: 3\nbatch-size: 8\nqformer_parts: [cross_attn, ffn]\n")
    cfg = parse_config(Stage1Config, ["--config", str(cfg_file), "--lr", "2e-4", "--grad_accum=2"], "p", "d")
    assert cfg.lr == 2e-4 and cfg.epochs == 3 and cfg.batch_size == 8 and cfg.grad_accum == 2
    assert cfg.weight_decay == 0.05 and cfg.warmup_steps == 1000 and cfg.num_beams == 5  # reference defaults
    assert cfg.lora_settings().qformer_parts == ("cross_attn", "ffn")
    cfg2 = parse_config(Stage2Config, [], "p", "d")
    assert (cfg2.lr, cfg2.schedule, cfg2.warmup_steps, cfg2.batch_size, cfg2.grad_accum) == (5e-4, "linear", 0, 4, 4)
    cfg2.resolve_generation(cot=True)
    assert (cfg2.max_new_tokens, cfg2.min_new_tokens) == (256, 30)

    (tmp_path / "bad.yaml").write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        parse_config(Stage1Config, ["--config", str(tmp_path / "bad.yaml")], "p", "d")
    with pytest.raises(ConfigError, match="batch_size must be > 0"):
        Stage1Config(batch_size=0)
    with pytest.raises(ConfigError, match="precision"):
        Stage1Config(precision="fp8")
    with pytest.raises(ConfigError, match="negative_share must be between 0 and 1"):
        parse_config(Stage2Config, ["--negative-share", "1.5"], "p", "d")
    assert parse_config(Stage2Config, ["--negative-share", "0.4"], "p", "d").negative_share == 0.4
    for name in ("stage1.yaml", "stage2.yaml"):  # the shipped files load
        path = Path(__file__).parents[1] / "train" / "configs" / name
        parse_config(Stage1Config if name == "stage1.yaml" else Stage2Config, ["--config", str(path)], "p", "d")


def test_experiment_presets():
    lora = Stage1Config(experiment=3).lora_settings()
    assert lora.qformer_parts == ("cross_attn",) and lora.qformer_r == 4 and lora.qformer_alpha == 8
    assert [Stage1Config(experiment=e).lora_settings().qformer_r for e in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert Stage1Config(experiment=3, qformer_r=2).lora_settings().qformer_r == 2  # explicit options win
    with pytest.raises(ConfigError, match="experiment"):
        Stage1Config(experiment=5)


def test_learning_rate_schedules():
    cfg = Stage1Config(lr=1e-4, warmup_steps=10, warmup_start_lr=1e-8)
    assert lr_factor(0, cfg, 110) * 1e-4 == pytest.approx(1e-8)
    assert lr_factor(5, cfg, 110) == pytest.approx(0.5, abs=1e-4)
    assert lr_factor(10, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.5)  # cosine half-way
    assert lr_factor(110, cfg, 110) == pytest.approx(0.0, abs=1e-12)
    lin = Stage2Config()
    assert [lr_factor(s, lin, 4) for s in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])


def test_batch_order_is_deterministic_resumable_and_sharded():
    s = EpochBatchSampler(10, 3, seed=1)
    assert s.batches(0) == EpochBatchSampler(10, 3, seed=1).batches(0) != s.batches(1)
    assert sorted(i for b in s.batches(0) for i in b) == list(range(10))
    s.set_epoch(1, skip=2)
    assert list(s) == s.batches(1)[2:] and len(s) == 2
    shards = [EpochBatchSampler(10, 2, seed=1, rank=r, world=3).batches(0) for r in range(3)]
    assert len({len(b) for b in shards}) == 1  # every process takes as many steps
    assert set(i for sh in shards for b in sh for i in b) == set(range(10))


def test_stage2_train_qformer_option_and_saved_config_round_trip(stage1_run, stage2_run, dataset, tmp_path):
    # the saved config.yaml is a valid --config for the same recipe
    cfg = parse_config(Stage2Config, ["--config", str(stage2_run / "config.yaml")], "p", "d")
    assert cfg.init == str(stage1_run) and cfg.max_steps == 2 and cfg.num_frames == 4
    argv = ["--init", str(stage1_run), "--data", str(dataset), "--out", str(tmp_path / "s2q"), *_fast2()]
    frozen = stage2.setup(parse_config(Stage2Config, argv, "p", "d")).trainable
    trained = stage2.setup(parse_config(Stage2Config, [*argv, "--train-qformer"], "p", "d")).trainable
    assert not any(n.startswith("base.qformer.") for n in frozen) and "frame_embed" not in frozen
    assert "clip_embed" in frozen and any(n.startswith("base.language_model.") for n in frozen)
    extra = set(trained) - set(frozen)
    assert "frame_embed" in extra and all(n == "frame_embed" or n.startswith("base.qformer.") for n in extra)


def test_unreadable_clip_in_a_worker_is_a_one_line_error(tmp_path, tiny_base, capsys):
    data = make_dataset(tmp_path / "data")
    for clip in (data / "clips").glob("m*_1_*.mp4"):
        clip.write_bytes(b"not a video")
    err = error_of(stage1.main, ["--base", str(tiny_base), "--data", str(data), "--out", str(tmp_path / "r"),
                                 *FAST, "--num-workers", "1", "--max-steps", "1"], capsys)
    line = [x for x in err.splitlines() if "error:" in x]
    assert len(line) == 1 and "Original Traceback" not in err
    assert "not a readable video" in line[0] and line[0].count("clips/m") == 1


def test_cached_chunk_tokens_give_the_same_answers(stage2_run, dataset):
    from core.config import GenerationSettings
    from train.data import ClipReader, ClipTokens, load_questions

    model = load_model(stage2_run / "final")
    items = load_questions(dataset, "val")[:5]
    clips = ClipReader(dataset, model.processor.image, model.processor.num_frames)
    gen = GenerationSettings(num_beams=2, max_new_tokens=8, min_new_tokens=1)
    per_chunk = evaluate.generate_answers(model, items, gen, 2, clips, keep_chunks=1)
    cached = ClipTokens(model, clips, [p for it in items for p in it["image"]], batch_size=3)
    assert evaluate.generate_answers(model, items, gen, 2, cached) == per_chunk
    assert [a.indices for a in per_chunk] == [parse_answer(a.text) for a in per_chunk]


# ---------------------------------------------------------------- learning


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in metrics_lines(run) if "loss" in r]


def test_both_stages_lower_the_loss(tmp_path, tiny_base, dataset, stage1_run):
    """A few repeated steps over the same strokes: each stage's own LoRA must fit them."""
    learn = ["--lr", "1e-2", "--schedule", "constant", "--save-every", "100", "--eval-limit", "1"]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert stage1.main(["--base", str(tiny_base), "--data", str(dataset), "--out", str(s1), "--max-steps", "12",
                        "--experiment", "4", *FAST, *learn]) == 0
    loss = _losses(s1)
    assert len(loss) == 12 and sum(loss[-3:]) / 3 < 0.97 * sum(loss[:3]) / 3, loss
    assert stage2.main(["--init", str(stage1_run), "--data", str(dataset), "--out", str(s2), "--max-steps", "12",
                        *_fast2(), *learn]) == 0
    loss = _losses(s2)
    assert len(loss) == 12 and sum(loss[-3:]) / 3 < 0.97 * sum(loss[:3]) / 3, loss


def test_schedule_steps_end_a_short_run_at_the_bottom_of_its_schedule(tmp_path, tiny_base, dataset):
    common = ["--base", str(tiny_base), "--data", str(dataset), "--max-steps", "4", "--experiment", "1",
              "--schedule", "linear", *FAST, "--save-every", "100"]
    assert stage1.main(["--out", str(tmp_path / "epochs"), *common]) == 0
    assert stage1.main(["--out", str(tmp_path / "short"), "--schedule-steps", "4", *common]) == 0
    spans = {run: [r["lr"] for r in metrics_lines(tmp_path / run) if "loss" in r] for run in ("epochs", "short")}
    assert len(spans["short"]) == 4 and spans["short"] == sorted(spans["short"], reverse=True)
    assert spans["short"][-1] <= 0.25e-3 + 1e-9  # 4 steps of a 4-step linear decay from 1e-3
    assert min(spans["epochs"]) > 0.5e-3  # the same steps are only the start of a 20-epoch schedule


def test_clips_encoded_once_give_the_loss_of_their_pixels(stage2_run, dataset):
    from train.data import ClipReader, ClipTokens, Collator, QADataset, load_questions, model_inputs

    model = load_model(stage2_run / "final")
    items = load_questions(dataset, "train")[:4]
    paths = [p for it in items for p in it["image"]]
    reader = ClipReader(dataset, model.processor.image, model.processor.num_frames)
    tokens = ClipTokens(model, reader, paths, batch_size=3)
    assert len(tokens) == len(set(paths)) and model.vlm.training is False
    collate = Collator(model.processor, 32)
    from_pixels = collate([QADataset(items, reader)[i] for i in range(len(items))])
    from_tokens = collate([QADataset(items, tokens)[i] for i in range(len(items))])
    assert "clip_tokens" in from_tokens and "pixel_values" not in from_tokens
    with torch.no_grad():
        a = model.vlm(**model_inputs(from_pixels, model.device)).loss
        b = model.vlm(**model_inputs(from_tokens, model.device)).loss
    torch.testing.assert_close(a, b)


def test_threads_option_sets_the_cpu_threads_of_a_run(tmp_path, dataset):
    from train.loop import start_run

    torch.set_num_threads(2)  # the test fixture restores the thread count afterwards
    cfg = parse_config(Stage1Config, ["--tiny", "--data", str(dataset), "--out", str(tmp_path / "r"), *FAST,
                                      "--threads", "1"], "p", "d")
    start_run(cfg)
    assert torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="threads"):
        parse_config(Stage1Config, ["--tiny", "--threads", "-1"], "p", "d")
