"""Evaluation metrics: caption metrics (BLEU-4, CIDEr-D, per-field accuracy) for stage 1 and
index-set metrics for stage-2 temporal grounding. Pure Python, importable by the app.

BLEU-4 is corpus-level (Papineni et al.): n-gram counts are clipped by the most frequent
occurrence in any reference and summed over the corpus, the brevity penalty uses the reference
length closest to each candidate. CIDEr-D follows the COCO caption evaluation code: TF-IDF
n-gram vectors (n = 1..4) with document frequencies from the references of the evaluated set,
clipped candidate counts, a Gaussian length penalty (sigma 6), averaged over references and
n and scaled by 10. Text is lower-cased and split on anything that is not a letter, digit,
hyphen or apostrophe (close to the COCO PTB tokenizer for these captions).

Grounding metrics (per question, then averaged over questions, i.e. macro averages):
- answerable questions (gold set G not empty), prediction P parsed from the answer; an answer
  "does not occur" or an unparseable answer counts as P = {}:
  Hit@1 = the first predicted index is in G; exact = (P == G);
  precision = |P & G| / |P| (0 when P is empty); recall = |P & G| / |G|; F1 = 2pr / (p + r) (0 when both 0).
- impossible questions (G empty): accuracy = the answer says "does not occur" (an unparseable
  answer is wrong).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from core.vocab import SIDES, STROKES, ZONE_PHRASES

_TOKEN = re.compile(r"[a-z0-9'\-]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


# ---------------------------------------------------------------- BLEU


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` of candidate texts against their reference lists, in [0, 1]."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        h = tokenize(hyp)
        r = [tokenize(x) for x in refs]
        if not r:
            raise ValueError("every hypothesis needs at least one reference")
        hyp_len += len(h)
        ref_len += min((abs(len(x) - len(h)), len(x)) for x in r)[1]  # closest, shorter on ties
        for n in range(1, max_n + 1):
            counts = ngrams(h, n)
            best: Counter = Counter()
            for x in r:
                best |= ngrams(x, n)
            correct[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0 or min(correct) == 0:
        return 0.0
    log_precision = sum(math.log(c / t) for c, t in zip(correct, total)) / max_n
    brevity = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


# ---------------------------------------------------------------- CIDEr-D


def _tfidf(counts: Counter, df: Counter, log_n: float) -> tuple[list[dict], list[float]]:
    """Per n: {ngram: tf * idf} and the vector's norm."""
    vecs: list[dict] = [{} for _ in range(4)]
    norms = [0.0] * 4
    for g, tf in counts.items():
        n = len(g) - 1
        vecs[n][g] = tf * (log_n - math.log(max(1.0, df[g])))
        norms[n] += vecs[n][g] ** 2
    return vecs, [math.sqrt(x) for x in norms]


def _all_ngrams(tokens: list[str], max_n: int = 4) -> Counter:
    out: Counter = Counter()
    for n in range(1, max_n + 1):
        out.update(ngrams(tokens, n))
    return out


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> tuple[float, list[float]]:
    """CIDEr-D of the corpus and of each hypothesis (the COCO evaluation's definition, x10)."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    if not hypotheses:
        return 0.0, []
    ref_tokens = [[tokenize(r) for r in refs] for refs in references]
    df: Counter = Counter()
    for refs in ref_tokens:
        df.update(set(g for r in refs for g in _all_ngrams(r)))
    log_n = math.log(float(len(hypotheses)))
    scores = []
    for hyp, refs in zip(hypotheses, ref_tokens):
        h = tokenize(hyp)
        hv, hn = _tfidf(_all_ngrams(h), df, log_n)
        total = [0.0] * 4
        for r in refs:
            rv, rn = _tfidf(_all_ngrams(r), df, log_n)
            penalty = math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma ** 2))
            for n in range(4):
                val = sum(min(v, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, v in hv[n].items())
                if hn[n] != 0 and rn[n] != 0:
                    val /= hn[n] * rn[n]
                total[n] += val * penalty
        scores.append(10.0 * sum(total) / 4 / max(len(refs), 1))
    return sum(scores) / len(scores), scores


# ---------------------------------------------------------------- captions back to fields


class CaptionFields(NamedTuple):
    side: str | None
    stroke: str | None
    zone: int | None

    @property
    def complete(self) -> bool:
        return None not in self


_SIDE = re.compile(r"^\s*(" + "|".join(map(re.escape, SIDES)) + r")\s+player\b")
_STROKE = re.compile(r"\bhits\s+an?\s+(" + "|".join(re.escape(s) for s in sorted(STROKES, key=len, reverse=True))
                     + r")(?=\s|$)")
_ZONES = sorted(ZONE_PHRASES.items(), key=lambda kv: len(kv[1]), reverse=True)


def normalize_caption(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def parse_caption(text: str) -> CaptionFields:
    """`{side} player hits a {stroke} {zone phrase}` -> its fields; a field that cannot be read is None.

    Fields are read independently, so a caption with a wrong stroke name still scores its side and zone.
    """
    t = normalize_caption(text)
    side = _SIDE.search(t)
    stroke = _STROKE.search(t)
    zone = None
    if stroke:
        rest = t[stroke.end():].strip()
        zone = next((z for z, phrase in _ZONES if rest == phrase), None)
    return CaptionFields(side.group(1) if side else None, stroke.group(1) if stroke else None, zone)


FIELDS = CaptionFields._fields


def field_accuracy(predicted: Sequence[CaptionFields], gold: Sequence[CaptionFields]) -> dict[str, float]:
    """Share of samples whose field equals the gold field (unreadable counts as wrong), per field,
    plus `all_fields` (all three right) and `mean` (the mean of the three)."""
    n = max(len(gold), 1)
    out = {f: sum(p[i] is not None and p[i] == g[i] for p, g in zip(predicted, gold)) / n
           for i, f in enumerate(FIELDS)}
    out["all_fields"] = sum(p.complete and p == g for p, g in zip(predicted, gold)) / n
    out["mean"] = sum(out[f] for f in FIELDS) / len(FIELDS)
    return out


def majority_baseline(train: Sequence[CaptionFields], gold: Sequence[CaptionFields]) -> dict:
    """Each field's most common train value, and its accuracy when always predicted on `gold`."""
    out = {}
    for i, f in enumerate(FIELDS):
        values = Counter(x[i] for x in train if x[i] is not None)
        value = values.most_common(1)[0][0] if values else None
        acc = sum(g[i] == value for g in gold) / max(len(gold), 1) if value is not None else 0.0
        out[f] = {"value": value, "accuracy": acc}
    return out


def confusion(gold: Sequence, predicted: Sequence, unreadable: str = "<unreadable>") -> dict[str, dict[str, int]]:
    """{gold label: {predicted label: count}}; None predictions are counted as `unreadable`."""
    table: dict[str, dict[str, int]] = {}
    for g, p in zip(gold, predicted):
        row = table.setdefault(str(g), {})
        key = unreadable if p is None else str(p)
        row[key] = row.get(key, 0) + 1
    return table


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """BLEU-4, CIDEr-D, exact match (with any reference) and per-field accuracy (against the first reference)."""
    pred_fields = [parse_caption(p) for p in predictions]
    gold_fields = [parse_caption(r[0]) for r in references]
    cider, _ = cider_d(predictions, references)
    return {
        "n": len(predictions),
        "bleu4": bleu(predictions, references),
        "cider": cider,
        "exact_match": sum(normalize_caption(p) in {normalize_caption(x) for x in r}
                           for p, r in zip(predictions, references)) / max(len(predictions), 1),
        "parsed": sum(f.complete for f in pred_fields) / max(len(predictions), 1),
        "field_accuracy": field_accuracy(pred_fields, gold_fields),
    }


# ---------------------------------------------------------------- index sets (stage 2)


def index_set_scores(predicted: Sequence[int] | None, gold: Sequence[int]) -> dict[str, float]:
    """One answerable question's scores; `predicted` None ("does not occur") counts as empty."""
    if not gold:
        raise ValueError("index_set_scores is for answerable questions; use `impossible_correct`")
    order = list(predicted or [])
    p, g = set(order), set(gold)
    hit = len(p & g)
    precision = hit / len(p) if p else 0.0
    recall = hit / len(g)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"hit1": float(bool(order) and order[0] in g), "exact": float(p == g),
            "precision": precision, "recall": recall, "f1": f1}


def impossible_correct(predicted: Sequence[int] | None) -> bool:
    """An impossible question is answered right only by "does not occur" (None)."""
    return predicted is None


ANSWERABLE_KEYS = ("hit1", "exact", "precision", "recall", "f1")


def _summary(preds: list, golds: list) -> dict:
    answerable = [index_set_scores(p, g) for p, g in zip(preds, golds) if g]
    impossible = [impossible_correct(p) for p, g in zip(preds, golds) if not g]
    out: dict = {"n": len(preds), "n_answerable": len(answerable), "n_impossible": len(impossible)}
    for k in ANSWERABLE_KEYS:
        out[k] = sum(s[k] for s in answerable) / len(answerable) if answerable else 0.0
    out["impossible_accuracy"] = sum(impossible) / len(impossible) if impossible else 0.0
    right = sum(s["exact"] for s in answerable) + sum(impossible)
    out["accuracy"] = right / len(preds) if preds else 0.0  # exact answer over every question
    out["unparsed"] = sum(p == [] for p in preds) / len(preds) if preds else 0.0
    return out


def grounding_metrics(predicted: Sequence[Sequence[int] | None], gold: Sequence[Sequence[int]],
                      kinds: Sequence[str] | None = None) -> dict:
    """Macro-averaged index-set metrics over answerable questions, "does not occur" accuracy over
    impossible ones, overall accuracy, and the same per question kind under `by_kind`.

    `predicted` items: indices, None ("does not occur") or [] (unparseable), as train.qa.parse_answer gives.
    `gold` items: the gold indices ([] for an impossible question)."""
    if len(predicted) != len(gold):
        raise ValueError("one prediction per question")
    preds, golds = list(predicted), [list(g or []) for g in gold]
    out = _summary(preds, golds)
    if kinds is not None:
        out["by_kind"] = {}
        for kind in dict.fromkeys(kinds):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            out["by_kind"][kind] = _summary([preds[i] for i in idx], [golds[i] for i in idx])
    return out
