"""Rally summaries rewritten by a language model (core.rewrite): a rewrite is kept only when it states
the template's facts (numbers, player names, stroke types) and nothing else; the real excerpt's
report, a stand-in writer, and the tiny model's own `write`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.indexer import add_match
from core.report import load_match, main, match_report
from core.rewrite import PROMPT, check_facts, rewrite_rallies
from core.store import StrokeStore

EXCERPT = Path(__file__).parent / "data" / "shuttleset"
NAMES = ["Kento MOMOTA", "CHOU Tien Chen"]
TEMPLATE = "Rally 5, 1-3: Kento MOMOTA served short; after 2 lobs CHOU Tien Chen smashed. Point CHOU Tien Chen, 1-4."


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    store = StrokeStore(tmp_path_factory.mktemp("rewrite") / "excerpt.sqlite")
    for f in sorted(EXCERPT.glob("*/set*.csv")):
        add_match(store, f)
    return match_report(load_match(store))


@pytest.mark.parametrize("rewrite, why", [
    ("In rally 5, at 1-3, Kento MOMOTA served short; after 2 lobs CHOU Tien Chen smashed "
     "to take the point, 1-4.", None),
    ("In rally 5, at 1-3, Kento MOMOTA served short; after 3 lobs CHOU Tien Chen smashed, 1-4.", "numbers"),
    ("In rally 5, at 1-3, MOMOTA served short; after 2 lobs CHOU smashed; 1-4.", "names"),
    ("Rally 5, 1-3: Kento MOMOTA served short; after 2 lobs CHOU Tien Chen smashed at Lindqvist. "
     "Point CHOU Tien Chen, 1-4.", "unknown"),
    ("Rally 5, 1-3: Kento MOMOTA served short; after 2 drops CHOU Tien Chen smashed. Point CHOU Tien Chen, 1-4.",
     "stroke types"),
    ("", "empty"),
])
def test_a_rewrite_is_kept_only_with_the_template_s_facts(rewrite, why):
    found = check_facts(TEMPLATE, rewrite, NAMES)
    assert (found is None) if why is None else found.startswith(why), found


def test_rewritten_summaries_keep_every_fact_of_the_table_and_the_others_stay(report):
    def writer(prompts: list[str]) -> list[str]:  # good rewrites of even rallies, a wrong number in odd ones
        out = []
        for i, p in enumerate(prompts):
            summary = p.removeprefix(PROMPT.format(summary=""))
            out.append(f"In short: {summary}" if i % 2 == 0 else re.sub(r"\d+", "99", summary, count=1))
        return out

    new = rewrite_rallies(report, writer)
    n = len(report["rallies"])
    assert new["rewritten"] == (n + 1) // 2 and n >= 2
    for i, (old, r) in enumerate(zip(report["rallies"], new["rallies"])):
        assert r["summary_source"] == ("model" if i % 2 == 0 else "table") and r["template"] == old["summary"]
        assert r["summary"] == (f"In short: {old['summary']}" if i % 2 == 0 else old["summary"])
        assert {k: v for k, v in r.items() if k not in ("summary", "summary_source", "template")} == \
            {k: v for k, v in old.items() if k != "summary"}  # the facts themselves are untouched
    assert report["rallies"][0]["summary"] == new["rallies"][0]["template"]  # the report given is not changed


def test_the_tiny_model_writes_one_text_per_prompt_and_its_words_are_fact_checked(report, tiny_base, tmp_path):
    from core.loader import load_any

    model = load_any(str(tiny_base))
    texts = model.write(["Rewrite: rally 1.", "Rewrite: rally 5, a longer one."])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    new = rewrite_rallies(report, model.write)  # a random model's words never carry the facts
    assert new["rewritten"] == 0 and [r["summary"] for r in new["rallies"]] == [r["summary"] for r in report["rallies"]]
    db = tmp_path / "one.sqlite"
    store = StrokeStore(db)
    add_match(store, next(EXCERPT.glob("*/set1.csv")))
    store.close()
    assert main(["--db", str(db), "--rewrite", str(tiny_base), "--out", str(tmp_path / "r.md")]) == 0
    assert "Point CHOU Tien Chen, 1-4." in (tmp_path / "r.md").read_text(encoding="utf-8")
    assert main(["--db", str(db), "--rewrite", str(tmp_path / "no-model")]) == 2
