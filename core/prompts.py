"""The model's fixed prompts and its answer format: how a question is put to the model and how
its answer is written (as a training target) and read back.

Stage 2 answers "The event happens at stroke 2", "... at strokes 0,3" or "The event does not
occur"; chain-of-thought targets wrap the answer in `<answer>...</answer>` after a
`<thinking>` block that captions every stroke.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

QFORMER_INSTRUCTION = "<Video> A short video description:"
CAPTION_PROMPT = "<Video> A short video description:"
QA_PROMPT = (
    "<Video> This video has {n} strokes. You must answer based only on the strokes you see\u2014do not "
    "invent or hallucinate any events. Let's think step by step. If the event occurs, output exactly "
    "\u201cThe event happens at strokes i,j,\u2026\u201d to list the stroke indices If the event does not "
    "occur, output exactly \u201cThe event does not occur\u201d Question: {question} Answer:"
)
SPECIAL_TOKENS = ("<thinking>", "</thinking>", "<answer>", "</answer>")
NOT_OCCUR = "The event does not occur"


def qa_prompt(n: int, question: str) -> str:
    """The stage-2 prompt for a chunk of `n` strokes."""
    return QA_PROMPT.format(n=n, question=question.strip())


def format_indices(indices: Sequence[int]) -> str:
    """'stroke 2' / 'strokes 0,3'."""
    return f"stroke {indices[0]}" if len(indices) == 1 else "strokes " + ",".join(str(i) for i in indices)


def format_answer(indices: Sequence[int] | None) -> str:
    """'The event happens at stroke 2', '... at strokes 0,3', or 'The event does not occur' (None/[])."""
    if not indices:
        return NOT_OCCUR
    return f"The event happens at {format_indices(list(indices))}"


def format_cot_answer(captions: Sequence[str], indices: Sequence[int] | None) -> str:
    """Chain-of-thought target: every stroke's caption, the conclusion, then the answer."""
    lines = [f"stroke {i}: {c}" for i, c in enumerate(captions)]
    conclusion = format_indices(list(indices)) if indices else "not occur"
    return ("<thinking>\n" + "\n".join(lines) + f"\ntherefore the answer is {conclusion}\n</thinking>\n"
            f"<answer>{format_answer(indices)}</answer>")


_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)
_INDICES = re.compile(r"happens\s+at\s+strokes?\s*((?:\d+\s*(?:,|and|\s)\s*)*\d+)", re.I)


def parse_answer(text: str) -> list[int] | None:
    """Indices from an answer: from `<answer>...</answer>` if present, else the sentence.

    None means "the event does not occur"; [] means nothing could be parsed (counts as wrong
    for both answerable and impossible questions). Indices keep their order, duplicates dropped.
    """
    m = _ANSWER_TAG.search(text)
    body = m.group(1) if m else text
    if re.search(r"does\s+not\s+occur", body, re.I):
        return None
    m = _INDICES.search(body)
    if not m:
        return []
    return list(dict.fromkeys(int(x) for x in re.findall(r"\d+", m.group(1))))
