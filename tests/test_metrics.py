"""Metrics on hand-worked examples: BLEU-4, CIDEr-D, caption fields, index sets."""
from __future__ import annotations

import math

import pytest

from core.prompts import format_answer, format_cot_answer, parse_answer
from train.metrics import (CaptionFields, bleu, caption_metrics, cider_d, confusion, field_accuracy, grounding_metrics,
                           index_set_scores, majority_baseline, parse_caption)


def test_bleu_identical_is_one():
    assert bleu(["upper player hits a smash in the backcourt"], [["upper player hits a smash in the backcourt"]]) == 1.0


def test_bleu_partial_match_by_hand():
    # 1-grams 5/6 (the second "the" is clipped), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths
    got = bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert got == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_bleu_brevity_penalty_and_closest_reference():
    # every n-gram right, 4 words against 6: BP = exp(1 - 6/4)
    assert bleu(["the cat sat on"], [["the cat sat on the mat"]]) == pytest.approx(math.exp(-0.5))
    # the closest reference length (4) is used, so no penalty
    assert bleu(["the cat sat on"], [["the cat sat on the mat", "the cat sat on"]]) == pytest.approx(1.0)


def test_bleu_is_corpus_level_and_zero_without_4gram_matches():
    assert bleu(["a b c"], [["a b c"]]) == 0.0  # no 4-gram at all
    two = bleu(["a b c d", "e f g h"], [["a b c d"], ["e f g x"]])
    # corpus counts: 1-grams 7/8, 2-grams 5/6, 3-grams 3/4, 4-grams 1/2
    assert two == pytest.approx((7 / 8 * 5 / 6 * 3 / 4 * 1 / 2) ** 0.25)


def test_cider_by_hand():
    # Two images, references "a b" and "c d": every reference n-gram has df 1, idf = log 2.
    # Image 1 identical: n=1 and n=2 cosine 1, n=3, 4 empty -> mean 0.5 -> x10 = 5.
    # Image 2 "c e": n=1 shares "c": (log2)^2 / (sqrt2 log2)^2 = 0.5, n=2 nothing -> 0.125 -> 1.25.
    corpus, per = cider_d(["a b", "c e"], [["a b"], ["c d"]])
    assert per == pytest.approx([5.0, 1.25])
    assert corpus == pytest.approx(3.125)


def test_cider_length_penalty_and_reference_average():
    # "a b x" vs "a b": one word longer -> Gaussian penalty exp(-1 / 72) on the cosine similarities
    _, per = cider_d(["a b x", "c d"], [["a b"], ["c d"]])
    # n=1: (2 (log2)^2) / (sqrt3 log2 * sqrt2 log2) = 2 / sqrt6; n=2: "a b" shared of {"a b","b x"}: 1 / sqrt2
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert per[0] == pytest.approx(expected)
    # with two references the score is their average: one identical (5 as above) and one unrelated (0)
    _, per = cider_d(["a b", "c d"], [["a b", "e f"], ["c d"]])
    assert per[0] == pytest.approx(5.0 / 2)


def test_cider_zero_when_every_image_has_the_ngrams():
    # an n-gram in every image's references has idf log(N) - log(N) = 0: no information
    corpus, _ = cider_d(["a b", "a b"], [["a b"], ["a b"]])
    assert corpus == 0.0


@pytest.mark.parametrize("text, fields", [
    ("upper player hits a smash in the backcourt", ("upper", "smash", 9)),
    ("bottom player hits a cross-court net shot at the net", ("bottom", "cross-court net shot", 7)),
    ("bottom player hits a net shot at the right side of the net", ("bottom", "net shot", 1)),
    ("Upper player hits a short serve in the left backcourt.", ("upper", "short serve", 4)),
    ("upper player hits a banana in the backcourt", ("upper", None, None)),
    ("upper player hits a smash somewhere", ("upper", "smash", None)),
    ("player hits a smash in the middle", (None, "smash", 5)),
    ("", (None, None, None)),
    ("upper upper upper", (None, None, None)),
])
def test_caption_parsing(text, fields):
    assert parse_caption(text) == CaptionFields(*fields)
    assert parse_caption(text).complete == (None not in fields)


def test_field_accuracy_baseline_and_confusion():
    gold = [CaptionFields("upper", "smash", 9), CaptionFields("bottom", "lob", 7), CaptionFields("upper", "smash", 5)]
    pred = [CaptionFields("upper", "smash", 9), CaptionFields("upper", None, 7), CaptionFields(None, "lob", 5)]
    acc = field_accuracy(pred, gold)
    assert acc["side"] == pytest.approx(1 / 3) and acc["stroke"] == pytest.approx(1 / 3)
    assert acc["zone"] == pytest.approx(1.0) and acc["all_fields"] == pytest.approx(1 / 3)
    assert acc["mean"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    train = [CaptionFields("upper", "smash", 9)] * 3 + [CaptionFields("bottom", "lob", 7)]
    base = majority_baseline(train, gold)
    assert base["side"] == {"value": "upper", "accuracy": pytest.approx(2 / 3)}
    assert base["zone"] == {"value": 9, "accuracy": pytest.approx(1 / 3)}
    table = confusion([g.stroke for g in gold], [p.stroke for p in pred])
    assert table == {"smash": {"smash": 1, "lob": 1}, "lob": {"<unreadable>": 1}}


def test_caption_metrics_exact_match_and_parsed():
    m = caption_metrics(["upper player hits a smash in the backcourt", "nonsense"],
                        [["upper player hits a smash in the backcourt"], ["bottom player hits a lob at the net"]])
    assert m["exact_match"] == 0.5 and m["parsed"] == 0.5
    assert m["field_accuracy"]["stroke"] == 0.5


def test_index_set_scores_by_hand():
    assert index_set_scores([2], [2]) == {"hit1": 1.0, "exact": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    s = index_set_scores([3, 0], [0, 2])  # first index wrong, one of two right
    assert s["hit1"] == 0.0 and s["exact"] == 0.0
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == pytest.approx(0.5)
    s = index_set_scores([0, 1, 2], [0])
    assert s["hit1"] == 1.0 and s["precision"] == pytest.approx(1 / 3) and s["f1"] == pytest.approx(0.5)
    for none in (None, []):  # "does not occur" or unparseable on an answerable question: empty prediction
        assert index_set_scores(none, [1]) == {"hit1": 0.0, "exact": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError):
        index_set_scores([1], [])


def test_grounding_metrics_with_impossible_questions_and_kinds():
    answers = [format_answer([1]), "The event happens at strokes 0,3", format_answer(None), "garbage",
               format_cot_answer(["c0", "c1"], None)]
    preds = [parse_answer(a) for a in answers]
    gold = [[1], [0, 2], [4], [], []]
    kinds = ["stroke", "stroke", "area", "area", "stroke"]
    m = grounding_metrics(preds, gold, kinds)
    assert (m["n"], m["n_answerable"], m["n_impossible"]) == (5, 3, 2)
    assert m["hit1"] == pytest.approx(2 / 3)
    assert m["exact"] == pytest.approx(1 / 3)
    assert m["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["f1"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["impossible_accuracy"] == 0.5  # "garbage" is wrong, the CoT "does not occur" is right
    assert m["accuracy"] == pytest.approx(2 / 5) and m["unparsed"] == pytest.approx(1 / 5)
    assert m["by_kind"]["area"]["n"] == 2 and m["by_kind"]["area"]["impossible_accuracy"] == 0.0
    assert m["by_kind"]["stroke"]["f1"] == pytest.approx(0.75)
