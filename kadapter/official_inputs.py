"""Downstream inputs built token for token as microsoft/K-Adapter's featurisers build them (``input_format="official"``).

The official code tokenizes every piece of an input *separately* with ``pytorch_transformers``' RoBERTa tokenizer,
whose ``_tokenize`` prepends a space to each piece (``text = ' ' + text``): so every piece starts with ``Ġ``, and a
piece that ends in a space leaves a lone ``Ġ`` token. Per task (HEAD 43651cd):

* entity typing (``utils_glue.convert_examples_to_features_entity_typing``): ``<s>`` + tok(left) + tok("@") +
  tok(mention) + tok("@") + tok(right) + ``</s>``; the head reads the first ``@``. "He met Obama in Paris" ->
  ``<s> ĠHe Ġmet Ġ Ġ@ ĠObama Ġ@ Ġ Ġin ĠParis </s>``. No truncation in the official code (a long example
  fails its assert); here a longer one is cut around the mention as the kit does, and counted.
* relation classification (``convert_examples_to_features_tacred``): the word pieces between the markers,
  each joined with spaces and tokenized, and the markers as *raw* tokens ``@`` / ``#`` (no ``Ġ``):
  ``<s> ĠBill Ġwas @ ĠObama @ Ġin # ĠParis # </s>``; cut at the end to ``max_length``; the head reads the first
  ``@`` and ``#``; a marker cut off points at ``max_length - 10``, the official clamp.
* multiple choice (``run_finetune_cosmosqa_adapter.read_examples_origin``): the ending is
  ``question + ' </s> ' + answer``, split at ``</s>`` with the pieces stripped, so each choice is
  ``<s> tok(context) </s> tok(question) </s> tok(answer) </s>``; context and ending are cut from the end of the
  longer one (``_truncate_seq_pair``).

For a tokenizer that is not byte-level BPE (MiniLM's WordPiece) the pieces are tokenized as the tokenizer does, and
its own ``[CLS]``/``[SEP]`` stand for ``<s>``/``</s>``. Outputs have the keys of the kit's encoders
(``kadapter.encoding``), so everything downstream is shared.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from .encoding import keep_window

SUBJECT, OBJECT, ENTITY = "@", "#", "@"
OFFICIAL_CLAMP = 10  # a marker beyond max_length is moved to max_length - 10 (convert_examples_to_features_tacred)
_PIECE_TOKENIZERS: dict = {}


def _byte_level(tokenizer) -> list:
    from tokenizers import pre_tokenizers

    def parts(pre):
        if isinstance(pre, pre_tokenizers.ByteLevel):
            return [pre]
        if isinstance(pre, pre_tokenizers.Sequence):
            return [p for inner in pre for p in parts(inner)]
        return []

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return parts(backend.pre_tokenizer) if backend is not None else []


def _piece_tokenizer(tokenizer):
    """A copy that adds no prefix space of its own (the official code adds exactly one, below)."""
    key = id(tokenizer)
    cached = _PIECE_TOKENIZERS.get(key)
    if cached is None or cached[0] is not tokenizer:
        copied = copy.deepcopy(tokenizer)
        pre = copied.backend_tokenizer.pre_tokenizer
        for part in _byte_level(copied):
            part.add_prefix_space = False
        copied.backend_tokenizer.pre_tokenizer = pre  # the backend hands out copies: set it back
        cached = _PIECE_TOKENIZERS[key] = (tokenizer, copied)
    return cached[1]


def pieces(tokenizer, text: str) -> list[str]:
    """``tokenizer.tokenize(text)`` as ``pytorch_transformers`` 1.x does it for RoBERTa: one space prepended."""
    if not text:
        return []
    if not _byte_level(tokenizer):
        return tokenizer.tokenize(text)
    return _piece_tokenizer(tokenizer).tokenize(" " + text)


def _specials(tokenizer) -> tuple[str, str]:
    start = tokenizer.cls_token or tokenizer.bos_token
    end = tokenizer.sep_token or tokenizer.eos_token
    if start is None or end is None:
        raise ValueError("input_format='official' needs a tokenizer with start and separator tokens (<s> </s>)")
    return start, end


def _ids(tokenizer, tokens: Sequence[str]) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    unknown = [t for t, i in zip(tokens, ids) if i is None]
    if unknown:
        raise ValueError(f"tokens {unknown[:5]} are not in the tokenizer's vocabulary")
    return ids


def _labels_multi_hot(labels, label2id: Mapping) -> list[float]:
    hot = [0.0] * len(label2id)
    for label in labels:
        if label not in label2id:
            raise ValueError(f"entity type {label!r} is not among the head's {len(label2id)} labels")
        hot[label2id[label]] = 1.0
    return hot


def official_entity_typing(record: Mapping, tokenizer, max_length: int = 256, label2id: Mapping | None = None) -> dict:
    """An entity-typing record ``{text, span_start, span_end, labels}`` as the official featuriser builds it."""
    text, start, end = record["text"], record["span_start"], record["span_end"]
    if not 0 <= start < end <= len(text):
        raise ValueError(f"mention span [{start}, {end}) outside a text of {len(text)} characters")
    first, last = _specials(tokenizer)
    left, mention, right = pieces(tokenizer, text[:start]), pieces(tokenizer, text[start:end]), pieces(tokenizer, text[end:])
    marker = pieces(tokenizer, ENTITY)
    content = left + marker + mention + marker + right
    span = (len(left), len(left) + 2 * len(marker) + len(mention) - 1)
    kept = keep_window(len(content), max_length - 2, [span])
    tokens = [first] + [content[i] for i in kept] + [last]
    out = {"input_ids": _ids(tokenizer, tokens), "attention_mask": [1] * len(tokens),
           "entity_pos": 1 + kept.index(span[0]), "truncated": len(kept) < len(content)}
    if label2id is not None:
        out["labels"] = _labels_multi_hot(record["labels"], label2id)
    return out


def official_relation(record: Mapping, tokenizer, max_length: int = 184, label2id: Mapping | None = None) -> dict:
    """A relation record (words, end-exclusive subject/object spans) as the official TACRED featuriser builds it."""
    words = list(record["tokens"])
    spans = {SUBJECT: (record["subj_start"], record["subj_end"]), OBJECT: (record["obj_start"], record["obj_end"])}
    first, last = _specials(tokenizer)
    tokens: list[str] = []
    where: dict[str, int] = {}
    cursor = 0
    for marker, (s, e) in sorted(spans.items(), key=lambda item: item[1][0]):
        tokens += pieces(tokenizer, " ".join(words[cursor:s]))
        where[marker] = len(tokens)
        tokens += [marker] + pieces(tokenizer, " ".join(words[s:e])) + [marker]
        cursor = e
    tokens += pieces(tokenizer, " ".join(words[cursor:]))
    truncated = len(tokens) > max_length - 2
    tokens = [first] + tokens[:max_length - 2] + [last]

    def position(marker: str) -> int:
        p = where[marker] + 1
        return p if p < len(tokens) - 1 else max_length - OFFICIAL_CLAMP  # cut off: the official clamp

    out = {"input_ids": _ids(tokenizer, tokens), "attention_mask": [1] * len(tokens),
           "subj_pos": position(SUBJECT), "obj_pos": position(OBJECT), "truncated": truncated}
    if label2id is not None:
        if record["relation"] not in label2id:
            raise ValueError(f"relation {record['relation']!r} is not among the head's {len(label2id)} labels")
        out["labels"] = int(label2id[record["relation"]])
    return out


def _truncate_pair(a: list, b: list, budget: int) -> bool:
    """``_truncate_seq_pair`` of the official code: pop from the end of the longer list (b on ties)."""
    cut = False
    while len(a) + len(b) > budget:
        (a if len(a) > len(b) else b).pop()
        cut = True
    return cut


def _split_on(text: str, token: str) -> list[str]:
    """``split_on_token`` of ``pytorch_transformers`` 1.x: the special token kept, the text around it stripped."""
    result = []
    parts = text.split(token)
    for i, part in enumerate(parts):
        part = part.strip()
        if i == 0 and not part:
            result.append(token)
        elif i == len(parts) - 1:
            result += [part] if part else []
        else:
            result += ([part] if part else []) + [token]
    return result


def official_multiple_choice(context: str, question: str, choices: Sequence[str], tokenizer, max_length: int = 256,
                             label: int | None = None) -> dict:
    """One ``<s> context </s> question </s> answer </s>`` sequence per choice, as the official CosmosQA code."""
    if label is not None and not 0 <= label < len(choices):
        raise ValueError(f"answer {label} outside the {len(choices)} choices")
    first, last = _specials(tokenizer)
    context_tokens = pieces(tokenizer, context)
    input_ids, truncated = [], False
    for choice in choices:
        ending = [t for part in _split_on(f"{question} {last} {choice}", last)
                  for t in ([part] if part == last else pieces(tokenizer, part))]
        ctx = context_tokens[:]
        truncated |= _truncate_pair(ctx, ending, max_length - 3)
        input_ids.append(_ids(tokenizer, [first] + ctx + [last] + ending + [last]))
    out = {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids], "truncated": truncated}
    if label is not None:
        out["labels"] = int(label)
    return out
