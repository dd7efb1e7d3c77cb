"""Caption similarity over distinct caption texts, not strokes.

Captions come from a small vocabulary, so an index of a million strokes holds a few hundred
distinct texts: a question is compared with each text once (exact cosine, no approximation), and
strokes are reached through the rows of each text, grouped once when the index is loaded. The
work per question grows with the rows of the answer, not with the index.
"""
from __future__ import annotations

import numpy as np


class CaptionSearch:
    """Strokes by caption text: `text` (N,) the text number of each stroke (-1: none), `vecs`
    (T, D) unit vectors of the texts."""

    def __init__(self, text: np.ndarray, vecs: np.ndarray):
        self.text, self.vecs = text, vecs
        captioned = np.flatnonzero(text >= 0)
        order = captioned[np.argsort(text[captioned], kind="stable")]  # rows of text 0, then 1, ... in row order
        counts = np.bincount(text[captioned], minlength=len(vecs))
        self._rows = np.split(order, np.cumsum(counts)[:-1]) if len(vecs) else []

    def scores(self, question: np.ndarray) -> np.ndarray:
        """(T,) cosine similarity of a question's unit vector with every text."""
        return self.vecs @ question

    def of_rows(self, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Similarity of given strokes (-1 where a stroke has no caption)."""
        t = self.text[rows]
        return np.where(t >= 0, scores[np.maximum(t, 0)], -1.0)

    def best(self, scores: np.ndarray, allowed: np.ndarray) -> float:
        """The highest similarity of an allowed stroke (-1 when none is captioned)."""
        for t in np.argsort(-scores, kind="stable"):
            if allowed[self._rows[t]].any():
                return float(scores[t])
        return -1.0

    def at_least(self, scores: np.ndarray, cut: float, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Allowed strokes whose similarity is >= cut, most similar first, ties in row order: (rows, scores)."""
        groups = [(float(scores[t]), self._rows[t][allowed[self._rows[t]]]) for t in np.flatnonzero(scores >= cut)]
        return self._ordered(groups)

    def top(self, scores: np.ndarray, k: int, minimum: float, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar allowed strokes at or above `minimum`, ties in row order: (rows, scores)."""
        groups, found = [], 0
        for t in np.argsort(-scores, kind="stable"):
            s = float(scores[t])
            if s < minimum or (found >= k and s < groups[-1][0]):
                break
            r = self._rows[t]
            r = r[allowed[r]][:k]
            if r.size:
                groups.append((s, r))
                found += r.size
        rows, values = self._ordered(groups)
        return rows[:k], values[:k]

    @staticmethod
    def _ordered(groups: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Groups of rows with one score each -> rows by descending score, equal scores in row order."""
        if not groups:
            return np.zeros(0, np.int64), np.zeros(0)
        by_score: dict[float, list[np.ndarray]] = {}
        for s, r in groups:
            by_score.setdefault(s, []).append(r)
        rows, values = [], []
        for s in sorted(by_score, reverse=True):
            parts = by_score[s]
            r = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
            rows.append(r)
            values.append(np.full(r.size, s))
        return np.concatenate(rows).astype(np.int64), np.concatenate(values)
