"""Every path that captions a stroke (the index, the Model tab, evaluation) gives the same caption."""
from __future__ import annotations

from pathlib import Path

from core.engine import Engine
from core.indexer import add_match
from core.lora import without_llm_lora
from core.store import StrokeStore
from core.video import iter_windows
from tests.test_index import FAST, tiny_model, write_reference_csv
from train.evaluate import evaluate_captions

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "assets" / "demo-model"
DEMO_SETS = sorted((REPO / "assets" / "demo-match").glob("*/set*.csv"))


def captions_three_ways(model, csv: Path, video: Path, tmp: Path, settings=None) -> tuple[dict, dict, dict]:
    """(index, Model tab, evaluation) captions of every stroke of a set, by hit frame."""
    tmp.mkdir(parents=True, exist_ok=True)
    store = StrokeStore(tmp / "ws.sqlite")
    add_match(store, csv, video, model=model, settings=settings)
    frames = sorted({s["frame"] for s in store.strokes()})
    by_index = {s["frame"]: s["model_caption"] for s in store.strokes()}
    engine = Engine()
    engine.model = model
    by_tab = engine.caption(video, frames, settings=settings)
    clips = {f"clips/{f}.mp4": model.processor.clips([c])[0] for f, c in iter_windows(video, frames)}
    items = [{"caption": "x", "image": f"clips/{f}.mp4", "image_id": str(f)} for f in frames]
    report = evaluate_captions(model, items, {str(f): ["x"] for f in frames}, settings, batch_size=8,
                               cache=clips.__getitem__)
    by_eval = {int(s["image_id"]): s["prediction"] for s in report["samples"]}
    return by_index, by_tab, by_eval


def test_tiny_stage2_model_captions_alike_everywhere_with_its_llm_lora_off(tmp_path, tiny_base, index_video):
    model = tiny_model(tiny_base, seed=3)
    model.stage = 2  # its LLM LoRA is stage 2's: captions must not read it
    csv = write_reference_csv(tmp_path / "demo.csv")
    by_index, by_tab, by_eval = captions_three_ways(model, csv, index_video, tmp_path / "stage2", FAST)
    assert len(by_index) == 10 and by_index == by_tab == by_eval
    model.stage = 1
    with without_llm_lora(model.vlm):
        plain = captions_three_ways(model, csv, index_video, tmp_path / "no-llm-lora", FAST)
    assert plain[0] == by_index
    # a stage-1 model captions with every adapter it has: here its LLM LoRA changes the captions
    with_lora = captions_three_ways(model, csv, index_video, tmp_path / "stage1", FAST)
    assert with_lora[0] == with_lora[1] == with_lora[2] and with_lora[0] != by_index


def test_shipped_demo_model_captions_the_demo_match_alike_everywhere(tmp_path):
    from core.loader import load_model

    model = load_model(DEMO_MODEL, device="cpu")
    assert model.stage == 2 and DEMO_SETS
    csv = DEMO_SETS[0]
    by_index, by_tab, by_eval = captions_three_ways(model, csv, csv.with_suffix(".mp4"), tmp_path)
    assert len(by_index) >= 20 and all(by_index.values())
    assert by_index == by_tab == by_eval
