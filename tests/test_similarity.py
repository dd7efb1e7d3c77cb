"""Caption search over distinct texts gives exactly what brute-force search over one vector per
stroke gives; a fresh engine embeds only its question (the index keeps every other vector)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.indexer import add_match
from core.query import QueryEngine
from core.similarity import CaptionSearch
from core.store import StrokeStore

DATA = Path(__file__).parent / "data" / "shuttleset"


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(12, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[5] = vecs[3]  # two texts that score alike: ties go in row order
    text = rng.integers(-1, 12, size=400)
    question = vecs[3] + 0.3 * vecs[7]
    return CaptionSearch(text, vecs), text, vecs, question / np.linalg.norm(question)


def brute_force(text, vecs, question):
    """Per stroke: its caption's similarity, -inf without one."""
    per_stroke = np.where(text >= 0, (vecs @ question)[np.maximum(text, 0)], -np.inf)
    return per_stroke.astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 50, 400])
def test_top_equals_exact_search(small, k):
    search, text, vecs, question = small
    allowed = np.arange(len(text)) % 3 != 0
    exact = np.where(allowed, brute_force(text, vecs, question), -np.inf)
    order = np.argsort(-exact, kind="stable")
    want = order[:k][exact[order[:k]] >= 0.1]
    rows, scores = search.top(search.scores(question), k, 0.1, allowed)
    assert rows.tolist() == want.tolist()
    assert np.allclose(scores, exact[want])


def test_at_least_and_best_equal_exact_search(small):
    search, text, vecs, question = small
    allowed = np.arange(len(text)) < 300
    exact = np.where(allowed, brute_force(text, vecs, question), -np.inf)
    sims = search.scores(question)
    assert search.best(sims, allowed) == pytest.approx(float(exact.max()))
    cut = float(exact.max()) - 0.5
    want = np.flatnonzero(exact >= cut)
    want = want[np.argsort(-exact[want], kind="stable")]
    rows, scores = search.at_least(sims, cut, allowed)
    assert rows.tolist() == want.tolist()
    assert np.allclose(scores, exact[want])
    assert search.of_rows(sims, np.flatnonzero(text < 0)).tolist() == [-1.0] * int((text < 0).sum())


def test_a_fresh_engine_embeds_only_its_question(tmp_path):
    from core.embed import default_embedder

    index = StrokeStore(tmp_path / "i.sqlite")
    add_match(index, sorted(DATA.glob("*/set1.csv"))[0])
    QueryEngine(index, default_embedder()).ask("a powerful overhead attack")  # captions and phrases stored

    class Counting:
        def __init__(self, inner):
            self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, []

        def encode(self, texts):
            self.texts += texts
            return self.inner.encode(texts)

        def encode_one(self, text):
            return self.encode([text])[0]

    counting = Counting(default_embedder())
    ans = QueryEngine(StrokeStore(index.path), counting).ask("a powerful overhead attack")
    assert ans.results and counting.texts[0] == "a powerful overhead attack"
    assert set(counting.texts[1:]) <= {"powerful", "overhead", "attack", "powerful overhead", "overhead attack",
                                       "powerful overhead attack"}  # its leftover spans, in the same pass
    assert len(counting.texts) == 7
