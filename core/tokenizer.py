"""Small offline tokenizers for models that have no pretrained checkpoint (tests, the demo model).

A WordPiece vocabulary of whole words from a corpus plus every printable ASCII character (as a
word start and as a `##` continuation), so any English text still tokenizes, never to <unk>
for ASCII. The LLM tokenizer follows T5's id conventions (pad 0, eos 1, unk 2); the Q-Former
one follows BERT's ([PAD] 0, [CLS] ... [SEP]). Both save as an ordinary Hugging Face
tokenizer folder that `AutoTokenizer.from_pretrained` reads back.
"""
from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from core.prompts import SPECIAL_TOKENS

_CHARS = [c for c in string.printable if not c.isspace()] + ["\u2014", "\u201c", "\u201d", "\u2026"]


def _vocab(specials: list[str], corpus: Iterable[str]) -> dict[str, int]:
    split = pre_tokenizers.BertPreTokenizer()
    words: dict[str, None] = {}
    for text in corpus:
        for word, _ in split.pre_tokenize_str(text.lower()):
            words.setdefault(word)
    tokens = specials + sorted(set(words) | {c.lower() for c in _CHARS}) + [f"##{c.lower()}" for c in _CHARS]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def _fast(vocab: dict[str, int], unk: str, post: processors.PostProcessor, **special) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = post
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, **special)


def build_llm_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """T5-style tokenizer (pad 0, eos 1, unk 2) with the chain-of-thought special tokens."""
    vocab = _vocab(["<pad>", "</s>", "<unk>", *SPECIAL_TOKENS], corpus)
    post = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return _fast(vocab, "<unk>", post, pad_token="<pad>", eos_token="</s>",
                 additional_special_tokens=list(SPECIAL_TOKENS))


def build_qformer_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """BERT-style tokenizer ([PAD] 0) for the Q-Former's instruction."""
    vocab = _vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], corpus)
    post = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                         special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return _fast(vocab, "[UNK]", post, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                 mask_token="[MASK]")
