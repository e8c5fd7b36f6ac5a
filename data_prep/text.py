"""Word-level text handling shared by every data source: one tokenizer, inline entity tags, surface-form keys.

:func:`simple_tokenize` is the project's single rule for turning raw text into word-level tokens (LAMA evidence
sentences, SemEval sentences, anything that comes untokenised). It follows Penn-Treebank habits, because the
sources that arrive tokenised (TACRED, FewRel, Re-DocRED, UD) follow them too, and a byte-level BPE tokenizer fed
pre-split words (with a prefix space) sees text closest to natural when words are not cut needlessly:

- abbreviations stay whole: ``U.S.``, ``e.g.``;
- numbers with separators stay whole: ``1,000``, ``3.5``, ``10:30``;
- words joined by inner hyphens or apostrophes stay whole: ``air-conditioner``, ``don't``, ``O'Brien``;
- the possessive / clitic ``'s`` is its own token: ``team 's`` (as in the treebanks);
- any other non-space character is a token on its own: brackets, quotes, a free-standing ``-``.

:func:`tokenize_tagged` layers inline tags (SemEval's ``<e1>…</e1>``) on top of it; :func:`squash` and
:func:`surface_key` compare names across tokenisations.
"""
from __future__ import annotations

import re
from typing import Sequence

_TOKEN_RE = re.compile(
    r"(?:[^\W\d_]\.){2,}"                  # abbreviations kept whole: U.S., e.g.
    r"|\d+(?:[.,:]\d+)+"                   # numbers with separators: 1,000  3.5  10:30
    r"|['’][sS]\b"                         # possessive clitic: 's
    r"|\w+(?:-\w+|['’](?![sS]\b)\w+)*"     # words, with inner hyphens or apostrophes (not before 's)
    r"|[^\w\s]",                           # any other character on its own: punctuation, brackets, free hyphens
    re.UNICODE,
)
# Quote and apostrophe variants that tokenisers and Wikipedia spell differently.
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": '"', "”": '"'})


def simple_tokenize(text: str) -> list[str]:
    """Word-level tokens (see the module docstring for the rules).

    >>> simple_tokenize("The U.S. team's air-conditioner (1,000 W) don't - work.")
    ['The', 'U.S.', 'team', "'s", 'air-conditioner', '(', '1,000', 'W', ')', "don't", '-', 'work', '.']
    """
    return _TOKEN_RE.findall(text)


def tokenize_tagged(text: str, tag_names: Sequence[str]) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
    """:func:`simple_tokenize` text that carries inline tags ``<name>…</name>``, and the tagged token spans.

    Returns ``(tokens, {name: (start, end)})`` with end-exclusive spans, or None unless every name in
    ``tag_names`` is opened and closed exactly once (nesting and overlap are allowed, as long as each tag closes
    after it opens). A tag always ends a token: ``"The<e1>cup</e1>s"`` gives ``The``, ``cup``, ``s``.
    """
    names = "|".join(re.escape(n) for n in tag_names)
    tag_re = re.compile(rf"<(/?)({names})>")
    tokens: list[str] = []
    starts: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    position = 0
    for tag in tag_re.finditer(text):
        tokens.extend(simple_tokenize(text[position:tag.start()]))
        position = tag.end()
        closing, name = tag.group(1) == "/", tag.group(2)
        if not closing and name not in starts and name not in spans:
            starts[name] = len(tokens)
        elif closing and name in starts:
            spans[name] = (starts.pop(name), len(tokens))
        else:
            return None
    tokens.extend(simple_tokenize(text[position:]))
    if starts or set(spans) != set(tag_names):
        return None
    return tokens, spans


def squash(text: str) -> str:
    """A string with whitespace removed and quotes unified: what two tokenisations of one name have in common.

    ``"U.S."``, ``U . S .``, ``"$856m"``, ``$ 856 m`` and ``Gon na`` (for "Gonna") all compare equal to their
    untokenised form, so matching on squashed token runs is independent of how either side was tokenised.
    """
    return "".join(text.translate(_QUOTES).split()).replace("''", '"')


def surface_key(text_or_tokens: str | Sequence[str]) -> str:
    """A case-folded :func:`squash` key for comparing names across sources (``"U.S."`` == ``["u", ".", "s", "."]``)."""
    text = text_or_tokens if isinstance(text_or_tokens, str) else "".join(text_or_tokens)
    return squash(text).casefold()
