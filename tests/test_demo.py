"""The demo model's build (base pretraining, the one-command orchestration's pieces) and the
shipped assets (assets/demo-model, assets/demo-match)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.config import ModelSettings
from core.loader import STROKE_EMBEDDINGS, build_model, load_model, read_manifest
from core.tiny import TinySpec
from train.clip_cache import cut_set
from train.demo import (HELDOUT_FAMILY, LOOK_SEEDS, RUNS_FILE, SHARES, SPLIT_SEEDS, TRAIN_FAMILIES, TRAIN_SIZES,
                        assemble, choose_sets, headline, match_sets, merge_match_files, parser, plan_looks,
                        render_looks, rendered_already, stage_configs, renders_for_test, write_model_card)
from train.pretrain_base import METRICS, PretrainConfig, augment, load_renders, pretrain, tokenizer_corpus
from train.replay import render_set

ROOT = Path(__file__).resolve().parents[1]
SHUTTLESET = ROOT / "tests" / "data" / "shuttleset"
SET_CSV = SHUTTLESET / "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals" / "set1.csv"
DEMO_MODEL = ROOT / "assets" / "demo-model"
DEMO_MATCH = ROOT / "assets" / "demo-match"
SPEC = TinySpec(image_size=32, patch_size=8, vision_hidden=32, qformer_hidden=32, num_query_tokens=4,
                llm_width=32, llm_ffn=64)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("renders")
    return render_set(SET_CSV, out, rallies="1-12", seed=3, size=(96, 54))


@pytest.fixture(scope="module")
def pretrained(rendered, tmp_path_factory) -> tuple[Path, dict]:
    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    assert len(clips) >= 8
    cfg = PretrainConfig(spec=SPEC, num_frames=4, batch_size=8, lr_a=3e-3, lr_b=3e-3, lr_c=3e-3, warmup=2,
                         steps_a=30, steps_b=30, steps_c=30, eval_every=30, eval_limit=8)
    out = tmp_path_factory.mktemp("base")
    return out, pretrain(clips, clips, out, cfg)


def _losses(folder: Path, phase: str) -> list[float]:
    lines = [json.loads(x) for x in (folder / METRICS).read_text().splitlines()]
    return [r["loss"] for r in lines if r["phase"] == phase]


def test_pretrain_lowers_each_phase_loss_and_logs_heldout_and_training_scores(pretrained):
    folder, summary = pretrained
    assert summary["steps_a"] == summary["steps_b"] == summary["steps_c"] == 30
    for phase in ("A", "B", "C"):
        losses = _losses(folder, phase)
        assert len(losses) >= 2 and losses[-1] < losses[0], (phase, losses)
    records = [json.loads(line) for line in (folder / METRICS).read_text().splitlines()]
    last_b = [r for r in records if r["phase"] == "B"][-1]
    fields = {f"{where}_{f}" for where in ("heldout", "train") for f in ("side", "stroke", "zone")}
    assert fields <= set(last_b) and all(0 <= last_b[k] <= 1 for k in fields)
    answers = {f"{where}_{m}" for where in ("heldout", "train") for m in ("f1", "impossible")}
    assert answers <= set(records[-1]) and all(0 <= records[-1][k] <= 1 for k in answers)


def test_phase_b_keeps_the_stroke_heads_as_an_auxiliary_loss(rendered, tmp_path):
    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    first_b = {}
    for weight in (0.0, 5.0):
        cfg = PretrainConfig(spec=SPEC, num_frames=4, batch_size=8, warmup=2, steps_a=3, steps_b=1, steps_c=0,
                             eval_every=100, eval_limit=8, heads_b=weight)
        pretrain(clips, None, tmp_path / str(weight), cfg)
        first_b[weight] = _losses(tmp_path / str(weight), "B")[0]
    # the same phase A and the same first batch: the difference is the weighted heads' loss
    # (three cross-entropies of barely trained heads, well above 1 at weight 5)
    assert first_b[5.0] - first_b[0.0] > 1.0, first_b


def test_a_tubelet_base_trains_its_tubelet_and_loads_with_it(rendered, tmp_path):
    from core.loader import STROKE_EMBEDDINGS, TUBELET

    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    cfg = PretrainConfig(spec=SPEC, num_frames=4, batch_size=8, warmup=2, steps_a=6, steps_b=2, steps_c=0,
                         eval_every=100, eval_limit=8, tubelet=3)
    pretrain(clips, None, tmp_path / "base", cfg)
    weight = load_file(str(tmp_path / "base" / STROKE_EMBEDDINGS))[TUBELET]
    assert weight.shape == (SPEC.vision_hidden, 3, 3, SPEC.patch_size, SPEC.patch_size) and weight.abs().sum() > 0
    model = build_model(ModelSettings(base=str(tmp_path / "base"), num_frames=4, device="cpu"))
    torch.testing.assert_close(model.vlm.tubelet.weight, weight)


def test_pretraining_continues_from_an_existing_base(rendered, pretrained, tmp_path):
    folder, _ = pretrained
    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    cfg = PretrainConfig(init=str(folder), num_frames=4, batch_size=8, lr_c=3e-3, warmup=2, steps_a=0, steps_b=0,
                         steps_c=5, eval_every=100, eval_limit=8)
    summary = pretrain(clips, None, tmp_path / "more", cfg)
    assert (summary["steps_a"], summary["steps_b"], summary["steps_c"]) == (0, 0, 5)
    before, after = load_file(folder / "model.safetensors"), load_file(tmp_path / "more" / "model.safetensors")
    assert before.keys() == after.keys()
    vision = [k for k in before if k.startswith("vision_model.")]
    llm = [k for k in before if k.startswith("language_model.")]
    assert vision and llm
    assert all(torch.equal(before[k], after[k]) for k in vision)  # phase A and B skipped, C freezes the tower
    assert any(not torch.equal(before[k], after[k]) for k in llm)  # phase C trained the T5 further
    logged = (folder / METRICS).read_text()
    with pytest.raises(ValueError, match="another folder"):
        pretrain(clips, None, folder, cfg)
    assert (folder / METRICS).read_text() == logged  # refused before touching the base


def test_renders_without_court_corners_are_refused_with_the_reason(rendered, tmp_path):
    shutil.copytree(rendered.parent, tmp_path / rendered.parent.name)  # the set, not match.csv / homography.csv
    assert len(load_renders([rendered.parent.parent], 4, SPEC.image_size)) > 0
    with pytest.raises(ValueError, match="court corners"):
        load_renders([tmp_path], 4, SPEC.image_size)


def test_instruction_tuned_base_brings_clip_tags_that_stage2_keeps(pretrained):
    from train.stage2 import tag_clips

    folder, _ = pretrained
    tags = load_file(str(folder / STROKE_EMBEDDINGS))["clip_embed"]
    assert tags[1:].abs().sum() > 0  # set orthogonal before phase C, then trained
    model = build_model(ModelSettings(base=str(folder), num_frames=4, device="cpu"))
    assert torch.equal(model.vlm.clip_embed.detach(), tags)
    assert tag_clips(model, None, [], seed=0) is None  # stage 2 keeps a base's trained tags


def test_chunk_sampler_packs_each_chunk_with_its_own_clip_tokens(rendered, pretrained):
    from train.pretrain_base import ChunkSampler

    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    tokens = torch.arange(len(clips), dtype=torch.float32)[:, None, None].expand(-1, 2, 3).contiguous()
    sampler = ChunkSampler(clips, tokens)
    assert sorted(r for rows in sampler.rows for r in rows) == list(range(len(clips)))
    for n, rows in enumerate(sampler.rows):
        assert all(sampler.chunk_of[r] == n for r in rows) and 1 <= len(rows) <= 5
    questions = sampler.fixed_questions(28, seed=0)
    assert len({n for n, _ in questions}) == 2 and len(questions) == 28  # every question of 2 chunks
    model = build_model(ModelSettings(base=str(pretrained[0]), num_frames=4, device="cpu"))
    batch = sampler.batch(questions[:3] + questions[-2:], model.processor)
    for i, (n, _) in enumerate(questions[:3] + questions[-2:]):
        k = len(sampler.rows[n])
        assert batch["clip_mask"][i].sum() == k
        assert torch.equal(batch["clip_tokens"][i, :k, 0, 0], torch.tensor(sampler.rows[n], dtype=torch.float32))
    assert batch["labels"].shape[0] == 5


def test_pretrained_base_loads_with_its_frame_embedding_and_whole_frame_resize(pretrained):
    folder, _ = pretrained
    stored = load_file(str(folder / STROKE_EMBEDDINGS))["frame_embed"]
    assert stored.abs().sum() > 0  # learned, not the zero start
    model = build_model(ModelSettings(base=str(folder), num_frames=4, device="cpu"))
    assert torch.equal(model.vlm.frame_embed.detach(), stored)
    assert model.processor.image.crop is False and model.processor.image.size == SPEC.image_size
    assert model.processor.image.motion  # grey + frame differences, as it was pretrained
    assert json.loads((folder / "preprocessor_config.json").read_text())["do_center_crop"] is False


def test_augmentation_moves_each_clip_by_at_most_the_shift(rendered):
    clips = cut_set(rendered, rendered.with_suffix(".mp4"), 4, SPEC.image_size)
    rng = np.random.default_rng(0)
    assert augment(clips.frames, rng, shift=0) is clips.frames
    shifted = augment(clips.frames, rng, shift=2)
    assert shifted.shape == clips.frames.shape and not np.array_equal(shifted, clips.frames)
    size, inner = SPEC.image_size, np.s_[:, 2:-2, 2:-2]
    for i in range(len(clips)):  # the whole clip moves as one, every frame by the same offset
        windows = [clips.frames[i][:, 2 + dy:size - 2 + dy, 2 + dx:size - 2 + dx]
                   for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(np.array_equal(shifted[i][inner], w) for w in windows)


def test_tokenizer_corpus_covers_captions_and_questions(pretrained):
    folder, _ = pretrained
    model = build_model(ModelSettings(base=str(folder), num_frames=4, device="cpu"))
    unk = model.tokenizer.unk_token_id
    for text in tokenizer_corpus():
        assert unk not in model.tokenizer(text).input_ids, text


def test_the_three_splits_come_from_different_matches(tmp_path):
    for m in ("a", "b", "c", "d", "e"):
        for s in (1, 2):
            (tmp_path / m).mkdir(exist_ok=True)
            (tmp_path / m / f"set{s}.csv").write_text("")
    (tmp_path / "no_sets").mkdir()
    matches = match_sets(tmp_path)
    assert sorted(matches) == list("abcde")
    sets = choose_sets(matches, {"train": 4, "val": 2, "test": 3}, seed=0)
    assert [len(sets[k]) for k in ("train", "val", "test")] == [4, 2, 3]
    owners = {k: {s.parent.name for s in v} for k, v in sets.items()}
    assert not owners["train"] & owners["val"] and not owners["train"] & owners["test"]
    assert not owners["val"] & owners["test"]


def test_every_rally_gets_its_own_look_from_its_splits_seed_range():
    sets = [ROOT.parent / "shared" / "data" / "shuttleset" / SET_CSV.parent.name / SET_CSV.name]  # every rally
    train = plan_looks(sets, "train", SPLIT_SEEDS["train"], 1, TRAIN_FAMILIES, TRAIN_SIZES)
    test = plan_looks(sets, "test", SPLIT_SEEDS["test"], 2, TRAIN_FAMILIES, {(640, 360): 1.0}, max_rallies=6)
    assert len({k.rallies for k in train}) == len(train) and all(len(k.rallies) == 1 for k in train)
    assert len(test) == 3 and [k.rallies for k in test] == [(1, 2), (3, 4), (5, 6)]
    seeds = lambda looks: {k.seed for k in looks}  # noqa: E731
    assert min(seeds(train)) == SPLIT_SEEDS["train"] * LOOK_SEEDS and not seeds(train) & seeds(test)
    assert len({k.video for k in train}) == len(train)  # one video per look
    assert {k.family for k in train} <= set(TRAIN_FAMILIES) and len({k.family for k in train}) > 1
    assert {k.size for k in train} <= set(TRAIN_SIZES) and len({k.fps for k in train}) > 1
    conditions = renders_for_test(test)
    assert {k.size for k in conditions["test_1280x720"]} == {(1280, 720)}
    assert {k.family for k in conditions[f"test_{HELDOUT_FAMILY}_640x360"]} == {HELDOUT_FAMILY}
    assert [k.seed for k in conditions["test_640x360"]] == [k.seed for k in test]


def test_rendered_looks_keep_their_own_size_rate_and_labels(tmp_path):
    from core.annotations import load_shuttleset_set
    from core.video import probe

    looks = plan_looks([SET_CSV], "train", 1, 1, ("high", "offside"), {(96, 54): 0.5, (128, 72): 0.5},
                       max_rallies=3)
    csvs, clips = render_looks(looks, tmp_path, processes=1)
    assert len(csvs) == len(looks) == 2  # the test set's two rallies
    assert len(clips) == sum(s.caption is not None for c in csvs for s in load_shuttleset_set(c).strokes)
    assert rendered_already(looks, tmp_path) and not rendered_already(looks[:1], tmp_path)
    mp4 = csvs[0].with_suffix(".mp4")
    written = mp4.stat().st_mtime_ns
    again, clips_again = render_looks(looks, tmp_path, processes=1)  # the same looks: only cut again
    assert again == csvs and mp4.stat().st_mtime_ns == written
    np.testing.assert_array_equal(clips_again.frames, clips.frames)
    source = {(s.rally, s.ball_round): s for s in load_shuttleset_set(SET_CSV).strokes}
    for look, rendered in zip(looks, csvs):
        info = probe(rendered.with_suffix(".mp4"))
        assert (info.width, info.height) == look.size and info.fps == pytest.approx(look.fps)
        for s in load_shuttleset_set(rendered).strokes:  # the camera moved; the court-plane labels did not
            original = source[(s.rally, s.ball_round)]
            assert (s.side, s.zone, s.stroke) == (original.side, original.zone, original.stroke)


def test_demo_runs_the_stage_recipes_on_their_own_configs(tmp_path):
    args = parser().parse_args(["--stage1-batch", "16", "--negatives", "0.4"])
    cfg1, cfg2 = stage_configs(args, tmp_path / "base", tmp_path / "data", tmp_path, budget_s=600)
    assert cfg1.lora_settings().qformer_r == 8 and cfg1.base == str(tmp_path / "base") and cfg1.num_frames == 8
    assert cfg1.max_steps == cfg1.schedule_steps == int(600 * SHARES["stage1"] * args.stage1_clips_per_s / 16) and cfg1.batch_size == 16
    assert cfg2.init == str(Path(cfg1.out) / "best") and cfg2.negative_share == 0.4 and cfg2.lora_llm().llm_alpha == 2 * args.stage2_llm_r
    assert cfg1.data == cfg2.data == str(tmp_path / "data") and not cfg1.progress


def test_merge_match_files_keeps_every_render(tmp_path):
    parts = []
    for i, rallies in enumerate(("1-12", "1-12")):
        part = tmp_path / f"p{i}"
        render_set(SET_CSV, part, rallies=rallies, seed=i, size=(64, 36))
        parts.append(part)
    merge_match_files(parts, tmp_path)
    rows = (tmp_path / "match.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per part


def test_assemble_writes_a_loadable_adapter_folder(pretrained, tmp_path):
    from core.config import LoraSettings
    from core.loader import save_adapters

    base, _ = pretrained
    work = tmp_path / "work"
    (work / "base").mkdir(parents=True)
    for f in base.rglob("*"):
        if f.is_file():
            target = work / "base" / f.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    model = build_model(ModelSettings(base=str(work / "base"), num_frames=4, device="cpu",
                                      lora=LoraSettings(qformer_parts=("cross_attn",), llm_part="all")), stage=2)
    save_adapters(model, work / "stage2" / "best")
    out = assemble(work / "stage2" / "best", work / "base", tmp_path / "demo-model")
    manifest = read_manifest(out)
    assert manifest["base_model"] == "base"  # beside the adapters, wherever the folder is moved
    loaded = load_model(out, device="cpu")
    assert loaded.stage == 2 and Path(loaded.settings.base) == (out / "base").resolve()


# ---------------------------------------------------------------- the shipped assets


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_demo_model_loads_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the manifest names its base by its path from the repository root
    manifest = read_manifest(DEMO_MODEL)
    assert manifest["stage"] == 2 and manifest["lora"]["llm_part"] and manifest["lora"]["qformer_parts"]
    model = load_model(DEMO_MODEL, device="cpu")
    assert model.processor.image.crop is False and model.processor.image.motion
    clips = [np.zeros((16, 54, 96, 3), np.uint8)]
    batch = model.processor.qa_batch([clips], ["When is a smash hits?"])
    assert model.vlm.generate(**batch).shape[0] == 1
    assert _size(DEMO_MODEL) <= 25 * 2**20


def test_demo_model_card_lists_disjoint_splits_and_test_metrics():
    card = json.loads((DEMO_MODEL / "card.json").read_text())
    splits = card["splits"]
    matches = {k: set(splits[k]["matches"]) for k in ("train", "val", "test")}
    assert all(matches.values()) and not matches["train"] & matches["val"]
    assert not (matches["train"] | matches["val"]) & matches["test"]
    ranges = sorted(splits[k]["render_seeds"] for k in ("train", "val", "test"))
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))  # disjoint seed ranges
    assert card["heldout_family"] not in splits["train"]["families"] | splits["val"]["families"]
    for name in ("train", "val", "test_640x360", "test_1280x720", f"test_{card['heldout_family']}_640x360"):
        s1, s2 = card["results"][name]["stage1"], card["results"][name]["stage2"]
        for field in ("side", "stroke", "zone"):
            assert 0 <= s1["field_accuracy"][field] <= 1 and field in s1["majority_baseline"]
        assert {"f1", "impossible_accuracy", "majority_baseline"} <= set(s2)
    assert card["timings_s"]["total"] <= 60 * 60
    assert (DEMO_MODEL / "README.md").is_file()
    assert card["demo_match"]["set"].split("/")[0] in matches["test"]
    assert card["demo_match"]["seed"] // LOOK_SEEDS == SPLIT_SEEDS["test"]


CARD_SOURCES = ("card.json", "manifest.json", "curves_base.jsonl", "curves_stage1.jsonl", "curves_stage2.jsonl",
                RUNS_FILE)


def _card_sources(folder: Path) -> Path:
    for name in CARD_SOURCES:
        shutil.copy(DEMO_MODEL / name, folder / name)
    return folder


def test_demo_model_card_is_written_from_its_card_json(tmp_path):
    # The shipped README must be what write_model_card makes of the shipped card.json, runs and curves.
    assert write_model_card(_card_sources(tmp_path)).read_text() == (DEMO_MODEL / "README.md").read_text()


def test_card_quotes_its_figures_from_card_json_and_the_runs_file(tmp_path):
    folder = _card_sources(tmp_path)
    card = json.loads((folder / "card.json").read_text())
    card["results"]["test_640x360"]["stage1"]["field_accuracy"]["zone"] = 0.123
    card["results"]["test_1280x720"]["stage2"]["f1"] = 0.456
    card["pretrain"]["steps_a"] = 4321
    card["timings_s"]["total"] = 600.0
    (folder / "card.json").write_text(json.dumps(card))
    runs = json.loads((folder / RUNS_FILE).read_text())
    runs["runs"][-1]["test"]["640x360"]["side"] = 0.5
    (folder / RUNS_FILE).write_text(json.dumps(runs))
    text = write_model_card(folder).read_text()
    test_row = next(line for line in text.splitlines() if line.startswith("| **test 640x360**"))
    assert "| 12.3 % |" in test_row
    for quoted in ("phase A 4321 steps", "**10.0 min** in total", "zone 12.3 % (57.7 points short)",
                   "f1 45.6 % (24.4 points short)"):
        assert quoted in text, quoted
    assert any("(this model)" in line and "| test 640x360 | 50.0 % |" in line for line in text.splitlines())


def test_card_runs_table_quotes_the_shipped_run():
    card = json.loads((DEMO_MODEL / "card.json").read_text())
    shipped = [r for r in json.loads((DEMO_MODEL / RUNS_FILE).read_text())["runs"] if r.get("shipped")]
    assert len(shipped) == 1
    run = shipped[0]
    assert run["steps"] == [card["pretrain"][f"steps_{p}"] for p in "abc"]
    assert run["wall_min"] == pytest.approx(card["timings_s"]["total"] / 60, abs=0.05)
    for size in ("640x360", "1280x720"):
        got = headline(card["results"][f"test_{size}"])
        assert [run["test"][size][k] for k in got] == pytest.approx(list(got.values()), abs=5e-4)


def test_demo_match_is_a_heldout_render_in_the_shuttleset_layout():
    from core.annotations import load_shuttleset_set

    sets = sorted(DEMO_MATCH.glob("*/set*.csv"))
    assert sets and (DEMO_MATCH / "match.csv").is_file() and (DEMO_MATCH / "homography.csv").is_file()
    for csv_path in sets:
        assert csv_path.with_suffix(".mp4").is_file()
        table = load_shuttleset_set(csv_path)
        assert table.court is not None and len(table.strokes) > 20
    assert _size(DEMO_MATCH) <= 10 * 2**20


def test_the_shipped_model_fine_tunes_on_the_demo_match_in_both_stages_and_captions_it_again(tmp_path):
    """What a coach does first: three corrected captions, then both fine-tune buttons on the shipped
    demo model (its 8 frames, its LLM LoRA) run to their end, and the first run captions the match."""
    from core.engine import Engine
    from core.runner import read_metrics
    from tests.test_ui_logic import _wait
    from train.config import run_config
    from train.qa import questions_of

    engine = Engine(tmp_path / "ws", demo_match=DEMO_MATCH)
    engine.start_demo().join(300)
    (match,) = engine.matches()
    engine.load(str(DEMO_MODEL))
    for stroke, text in zip(engine.strokes(match["id"])[:3], ("upper player hits a drop at the net",
                                                             "bottom player hits a lob at the net",
                                                             "upper player hits a smash in the backcourt")):
        engine.set_caption(stroke["id"], text)
    runs = {}
    for stage in (1, 2):
        runs[stage], counts = engine.start_finetune(match["id"], 2, run_config=run_config, stage=stage,
                                                    questions=questions_of)
        assert counts["corrected"] == 3 and counts["clips"] == match["strokes"]
        assert _wait(lambda: engine.runner.status(runs[stage]).state != "running", timeout=600)
        assert engine.runner.status(runs[stage]).state == "finished", engine.runner.log_tail(runs[stage])
        assert [m["step"] for m in read_metrics(engine.runner.run_dir(runs[stage])) if "loss" in m][-1] == 2
    assert counts["questions"] > 0
    engine.use_run(runs[1])
    assert engine.model.settings.num_frames == read_manifest(DEMO_MODEL)["num_frames"]
    assert engine.recaption_match(match["id"]) == match["strokes"]
