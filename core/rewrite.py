"""Rally summaries in a language model's own words, kept only when they state the same facts.

The template summaries of core.report are facts read from the stroke table. A loaded model
(`StrokeModel.write`: its LLM with the LoRA off) may rewrite each one; a rewrite is kept only
when `check_facts` finds in it exactly the numbers (scores, stroke counts, rally numbers) and the
player names of the template, and no stroke type the template does not name; otherwise the
template stays. So a rewrite can change the wording, never a fact.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from core.fields import english_words
from core.vocab import STROKES

PROMPT = "Rewrite this badminton rally summary in fluent English. Keep every name and number: {summary}"
NUMBER = re.compile(r"\d+")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _name_words(names: list[str]) -> set[str]:
    return {w.lower() for n in names for w in WORD.findall(n)}


def _strokes(text: str) -> set[str]:
    low = text.lower()
    return {s for s in STROKES if re.search(rf"\b{re.escape(s)}", low)}


def check_facts(template: str, rewrite: str, names: list[str]) -> str | None:
    """None when `rewrite` states the template's facts and no other; else what differs."""
    if not rewrite.strip():
        return "empty"
    if sorted(NUMBER.findall(rewrite)) != sorted(NUMBER.findall(template)):
        return f"numbers {NUMBER.findall(rewrite)} for {NUMBER.findall(template)}"
    words = _name_words(names)
    named = lambda text: {w.lower() for w in WORD.findall(text) if w.lower() in words}  # noqa: E731
    if named(rewrite) != named(template):
        return f"names {sorted(named(rewrite))} for {sorted(named(template))}"
    invented = _strokes(rewrite) - _strokes(template)
    if invented:
        return f"stroke types {sorted(invented)} not in the table"
    template_words = {w.lower() for w in WORD.findall(template)}
    unknown = [w for w in WORD.findall(rewrite)
               if w.lower() not in template_words and w.lower() not in english_words() and len(w) >= 4]
    if unknown:  # a word that is neither English nor the template's: a name made up
        return f"unknown words {unknown}"
    return None


def rewrite_rallies(report: dict, write: Callable[[list[str]], list[str]]) -> dict:
    """The report with each rally's summary rewritten by `write` (prompts -> texts) where the
    rewrite passes `check_facts`; every rally gets `summary_source` ("model" or "table") and the
    report `rewritten` (how many were kept)."""
    rallies = report["rallies"]
    names = list(report["match"]["players"].values())
    texts = write([PROMPT.format(summary=r["summary"]) for r in rallies]) if rallies else []
    kept = 0
    out = []
    for r, text in zip(rallies, texts):
        text = " ".join(text.split())
        why = check_facts(r["summary"], text, names)
        out.append({**r, "summary": text if why is None else r["summary"],
                    "summary_source": "model" if why is None else "table", "template": r["summary"]})
        kept += why is None
    return {**report, "rallies": out, "rewritten": kept}
