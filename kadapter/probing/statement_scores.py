"""Log-likelihood of whole statements, as lm-pub-quiz 0.3.3 scores them, for every head of a probe set at once.

What is scored (read from lm-pub-quiz's ``CausalLMEvaluator``/``MaskedLMEvaluator``, ``reduction="sum"``):

- **Causal LM**: the statement is tokenized with special tokens and a ``<bos>`` first (added by hand when the
  tokenizer does not add it); the score is the sum of ``log p(token_t | tokens_<t)`` over every *non-special*
  token t >= 1 — template, subject and answer alike (``conditional_score=False``), never ``<bos>``, padding or an
  ``</s>`` the tokenizer appends.
- **Masked LM** (pseudo-log-likelihood, ``within_word_l2r``): one copy of the statement per non-special token t,
  with t and the following tokens of the same word masked; the score is the sum over t of ``log p(token_t)`` at
  the masked position.

Where the kit is faster, with the same numbers:

- causal: the statements of one instance share their first tokens (``<bos>``, subject, template up to the answer).
  The prefix runs once (its KV cache kept) and its tokens' log-probabilities are summed once; then only the
  continuations (answer and the rest of the template) run, batched, on copies of the cache, right-padded (a causal
  model's real tokens never see the padding after them). The backbone runs once for all heads.
- masked: every masked copy of every statement of a relation is batched by length (lm-pub-quiz pads and batches
  per instance); the backbone runs once for all heads.

A *head* is a probe of :mod:`kadapter.probing`: a :class:`~kadapter.probing.causal.CausalLMProbe` (the model's own
LM head with a residual fusion; :func:`~kadapter.probing.causal.own_head_probe` is the untouched backbone) or a
:class:`~kadapter.probing.masked.MaskedLMProbe` (an MLM head over the fusion). Each head reads the backbone's final
state and its adapters' outputs at the predicting positions, and its log-softmax runs over the full vocabulary.
"""
from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..model import KAdapterModel
from .features import BACKBONE_SOURCE

LOGIT_CHUNK = 128  # positions per full-vocabulary log-softmax (262k-wide on Gemma: 128 MB of float32 per chunk)


@dataclass
class Encoded:
    """One statement's token ids and which tokens are scored (lm-pub-quiz's scoring mask)."""

    ids: list[int]
    scored: list[bool]
    word_ids: list[int | None] | None = None  # masked LMs: the word each token belongs to


# =====================================================================================================================
# Tokenization, as lm-pub-quiz
# =====================================================================================================================
@contextmanager
def _bos_added(tokenizer):
    """lm-pub-quiz's ``add_bos_token`` context: ask the tokenizer to add ``<bos>`` while encoding."""
    if not hasattr(tokenizer, "add_bos_token"):
        yield
        return
    before = tokenizer.add_bos_token
    try:
        tokenizer.add_bos_token = True
    except (AttributeError, ValueError):  # a tokenizer that does not allow it keeps its own behaviour
        yield
        return
    try:
        yield
    finally:
        tokenizer.add_bos_token = before


def encode_causal(tokenizer, statements: Sequence[str]) -> list[Encoded]:
    """Token ids with ``<bos>`` first and the non-special tokens marked as scored (``CausalLMEvaluator.encode``)."""
    with _bos_added(tokenizer):
        batch = tokenizer(list(statements), add_special_tokens=True, return_special_tokens_mask=True)
    out = []
    bos = tokenizer.bos_token_id
    for statement, ids, special in zip(statements, batch["input_ids"], batch["special_tokens_mask"]):
        if bos is not None and (not ids or ids[0] != bos):  # lm-pub-quiz's ensure_bos_token_added
            enc = tokenizer(tokenizer.bos_token + statement, add_special_tokens=True, return_special_tokens_mask=True)
            ids, special = enc["input_ids"], list(enc["special_tokens_mask"])
            special[0] = 1
        out.append(Encoded(list(ids), [not s for s in special]))
    return out


def encode_masked(tokenizer, statements: Sequence[str]) -> list[Encoded]:
    """Token ids (with the tokenizer's special tokens), scored = non-special, and each token's word id."""
    batch = tokenizer(list(statements), return_special_tokens_mask=True)
    return [Encoded(list(ids), [not s for s in special], batch.word_ids(i))
            for i, (ids, special) in enumerate(zip(batch["input_ids"], batch["special_tokens_mask"]))]


def pll_copies(encoded: Encoded, mask_id: int) -> list[tuple[list[int], int, int]]:
    """``within_word_l2r``: per scored token t, (ids with t and the rest of its word masked, t, gold id at t)."""
    positions = [t for t, s in enumerate(encoded.scored) if s]
    copies = []
    for i, t in enumerate(positions):
        ids = list(encoded.ids)
        ids[t] = mask_id
        word = encoded.word_ids[t]
        if word is not None:
            for right in positions[i + 1:]:
                if encoded.word_ids[right] != word:
                    break  # as lm-pub-quiz: words are contiguous, the first other word ends the masking
                ids[right] = mask_id
        copies.append((ids, t, encoded.ids[t]))
    return copies


# =====================================================================================================================
# Heads: log p(label) at chosen positions of a batch of states
# =====================================================================================================================
class HeadReader:
    """The log-probabilities every head gives at some positions of one batch of backbone states.

    ``final``: (batch, seq, hidden) the backbone's last state; ``taps``: hidden-state index -> (batch, seq, hidden);
    ``mask``: (batch, seq). Each adapter runs once per batch, whichever heads read it."""

    def __init__(self, model: KAdapterModel, final: torch.Tensor, taps: Mapping[int, torch.Tensor],
                 mask: torch.Tensor):
        self.model, self.final, self.taps, self.mask = model, final, taps, mask
        self._learned: dict[str, torch.Tensor] = {}

    def learned_part(self, name: str) -> torch.Tensor:
        """Adapter ``name``'s learned part (what every probe reads of an adapter), computed once per batch."""
        if name not in self._learned:
            adapter = self.model.adapters[name]
            was_training = adapter.training
            adapter.eval()
            self._learned[name] = adapter.learned_part(self.taps, self.mask).float()
            adapter.train(was_training)
        return self._learned[name]

    @torch.no_grad()
    def log_probs(self, head, rows: torch.Tensor, cols: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(n,) log p(labels) under ``head`` at positions (rows, cols), full-vocabulary softmax."""
        head.eval()
        out = []
        for s in range(0, len(rows), LOGIT_CHUNK):
            r, c = rows[s:s + LOGIT_CHUNK], cols[s:s + LOGIT_CHUNK]
            sources = {BACKBONE_SOURCE: self.final[r, c]}
            sources.update({n: self.learned_part(n)[r, c] for n in head.adapter_names})
            logits = head(head.inputs(sources)).logits.float()
            lab = labels[s:s + LOGIT_CHUNK].to(logits.device)
            out.append(torch.log_softmax(logits, -1).gather(-1, lab[:, None])[:, 0].cpu())
        return torch.cat(out) if out else torch.zeros(0)


def _needed_taps(model: KAdapterModel, heads: Mapping[str, object]) -> list[int]:
    return sorted({t for h in heads.values() for n in h.adapter_names for t in model.adapters[n].tap_layers})


def _device(model: KAdapterModel) -> torch.device:
    return next(model.backbone.parameters()).device


# =====================================================================================================================
# Causal LMs: shared prefix once, continuations batched on copies of its KV cache
# =====================================================================================================================
def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving at least one token of each to continue (and >= 1: ``<bos>``)."""
    shortest = min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return max(n, 1)


def _run_core(model: KAdapterModel, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
              taps: Sequence[int], cache=None):
    core = model.kind.core(model.backbone)
    # transformers >= 5.2x names the KV cache `cache` (`past_key_values` is deprecated); older ones only know the latter
    cache_arg = "cache" if "cache" in inspect.signature(core.forward).parameters else "past_key_values"
    out = core(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True,
               output_hidden_states=bool(taps), **({cache_arg: cache} if cache is not None else {}))
    final = out.last_hidden_state.float()
    returned = out.get("cache", out.get("past_key_values"))
    return final, {t: out.hidden_states[t].float() for t in taps}, returned


def _passes(groups: Sequence[Sequence[Encoded]], batch_size: int) -> list[list[tuple[int, list[int]]]]:
    """Passes of (group, statement indices) with at most ``batch_size`` statements each (a larger group is cut)."""
    passes, current, rows = [], [], 0
    for g, group in enumerate(groups):
        order = sorted(range(len(group)), key=lambda j: len(group[j].ids))  # similar lengths together
        for start in range(0, len(order), batch_size):
            part = order[start:start + batch_size]
            if current and rows + len(part) > batch_size:
                passes.append(current)
                current, rows = [], 0
            current.append((g, part))
            rows += len(part)
    return passes + ([current] if current else [])


@torch.inference_mode()
def causal_scores(model: KAdapterModel, heads: Mapping[str, object], groups: Sequence[Sequence[Encoded]],
                  batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """Summed log-likelihood of every statement, per group (the statements of one instance share a prefix) and head.

    Per pass: the prefixes of its groups run once, left-padded with position ids counted over real tokens, their
    KV cache kept; then every statement's continuation runs on its group's row of that cache, right-padded, with
    positions continuing its prefix's. Heads read the states right-aligned (token t at column t). On a CPU a pass
    costs about as much for 30 tokens as for 300 (the weights are streamed either way), so a pass holds as many
    whole groups as ``batch_size`` statements allow (a larger group is cut, its prefix counted once)."""
    device, taps = _device(model), _needed_taps(model, heads)
    prefix_len = [common_prefix_length([e.ids for e in group]) for group in groups]
    out = [{name: torch.zeros(len(group), dtype=torch.float64) for name in heads} for group in groups]
    prefix_done: set[int] = set()
    for chunk in _passes(groups, batch_size):
        members = sorted({g for g, _ in chunk})
        row_of = {g: i for i, g in enumerate(members)}
        p_max = max(prefix_len[g] for g in members)
        p_ids = torch.zeros(len(members), p_max, dtype=torch.long)
        p_mask = torch.zeros(len(members), p_max, dtype=torch.long)
        for i, g in enumerate(members):
            p_ids[i, p_max - prefix_len[g]:] = torch.tensor(groups[g][0].ids[:prefix_len[g]])
            p_mask[i, p_max - prefix_len[g]:] = 1
        positions = model.kind.position_ids(p_mask)
        p_final, p_taps, cache = _run_core(model, p_ids.to(device), positions.to(device), p_mask.to(device), taps)
        todo = [g for g in members if g not in prefix_done]  # a group cut over passes counts its prefix once
        _add_prefix_scores(model, heads, groups, prefix_len, todo, row_of, p_max, (p_final, p_taps, p_mask), out)
        prefix_done.update(todo)
        _add_continuation_scores(model, heads, groups, prefix_len, chunk, row_of, p_max, (p_final, p_taps, p_mask),
                                 cache, out)
    return out


def _read(model, heads, reader: HeadReader, rows, cols, labels, owners, n_owners: int) -> dict[str, torch.Tensor]:
    """Per head, the log-probabilities at (rows, cols) summed per owner."""
    index = [torch.tensor(x, dtype=torch.long) for x in (rows, cols, labels, owners)]
    sums = {}
    for name, head in heads.items():
        lp = reader.log_probs(head, *index[:3]).double()
        sums[name] = torch.zeros(n_owners, dtype=torch.float64).index_add_(0, index[3], lp)
    return sums


def _right_aligned_reader(model, final: torch.Tensor, taps: Mapping[int, torch.Tensor] | None,
                          shifts: torch.Tensor, lengths: torch.Tensor) -> HeadReader:
    """States moved left by ``shifts`` per row, so token t of every row sits at column t (right padding, the layout
    under which causal adapters are exact: a left-padding query sees no key at all), and the reader over them."""
    width = int(lengths.max())
    device = final.device
    columns = (torch.arange(width)[None] + shifts[:, None]).clamp(max=final.shape[1] - 1).to(device)

    def align(x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, columns[:, :, None].expand(-1, -1, x.shape[-1]))

    mask = (torch.arange(width)[None] < lengths[:, None]).long().to(device)
    return HeadReader(model, align(final), {t: align(h) for t, h in (taps or {}).items()}, mask)


def _add_prefix_scores(model, heads, groups, prefix_len, todo, row_of, p_max, prefix_states, out) -> None:
    """Each group's prefix tokens 1..P-1 (predicted at the positions before them): the same for all its statements."""
    if not todo:
        return
    final, taps, _ = prefix_states
    lengths = torch.tensor([prefix_len[g] for g in todo])
    index = torch.tensor([row_of[g] for g in todo], device=final.device)
    reader = _right_aligned_reader(model, final[index], taps and {t: h[index] for t, h in taps.items()},
                                   p_max - lengths, lengths)
    # (row, column, label, owner): token t at column t, predicted one column before
    wanted = [(k, t - 1, groups[g][0].ids[t], k) for k, g in enumerate(todo)
              for t in range(1, prefix_len[g]) if groups[g][0].scored[t]]
    if not wanted:
        return
    sums = _read(model, heads, reader, *zip(*wanted), n_owners=len(todo))
    for k, g in enumerate(todo):
        for name in heads:
            out[g][name] += sums[name][k]


def _add_continuation_scores(model, heads, groups, prefix_len, chunk, row_of, p_max, prefix_states, cache,
                             out) -> None:
    """Every statement's tokens after its group's prefix, on its group's row of the prefix cache."""
    p_final, p_taps, p_mask = prefix_states
    device = p_final.device
    spec = [(g, j) for g, part in chunk for j in part]
    conts = [groups[g][j].ids[prefix_len[g]:] for g, j in spec]
    width = max(len(c) for c in conts)
    ids = torch.zeros(len(spec), width, dtype=torch.long)
    real = torch.zeros(len(spec), width, dtype=torch.long)
    for r, c in enumerate(conts):
        ids[r, :len(c)], real[r, :len(c)] = torch.tensor(c), 1
    index = torch.tensor([row_of[g] for g, _ in spec])
    row_cache = copy.deepcopy(cache)
    row_cache.batch_select_indices(index.to(device))
    positions = torch.tensor([prefix_len[g] for g, _ in spec])[:, None] + torch.arange(width)[None]
    prefix_mask = p_mask[index]
    # right padding: no real token attends to the padding after it, so the continuation part of the mask is ones
    backbone_mask = torch.cat([prefix_mask, torch.ones(len(spec), width, dtype=torch.long)], dim=1)
    final, taps, _ = _run_core(model, ids.to(device), positions.to(device), backbone_mask.to(device),
                               sorted(p_taps), row_cache)
    index_d = index.to(device)
    final = torch.cat([p_final[index_d], final], dim=1)
    taps = {t: torch.cat([p_taps[t][index_d], taps[t]], dim=1) for t in taps}
    prefix_lengths = torch.tensor([prefix_len[g] for g, _ in spec])
    reader = _right_aligned_reader(model, final, taps, p_max - prefix_lengths,
                                   torch.tensor([len(groups[g][j].ids) for g, j in spec]))
    wanted = [(r, t - 1, groups[g][j].ids[t], r) for r, (g, j) in enumerate(spec)
              for t in range(prefix_len[g], len(groups[g][j].ids)) if groups[g][j].scored[t]]
    sums = _read(model, heads, reader, *zip(*wanted), n_owners=len(spec))
    for r, (g, j) in enumerate(spec):
        for name in heads:
            out[g][name][j] += sums[name][r]


# =====================================================================================================================
# Masked LMs: pseudo-log-likelihood, every masked copy of a relation batched by length
# =====================================================================================================================
@torch.inference_mode()
def masked_scores(model: KAdapterModel, heads: Mapping[str, object], encoded: Sequence[Encoded],
                  batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Pseudo-log-likelihood (``within_word_l2r``) of each statement, per head."""
    tokenizer = model.tokenizer
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{model.identity.name_or_path}: the tokenizer has no mask token; a masked LM needs one")
    device, taps = _device(model), _needed_taps(model, heads)
    copies = [(ids, t, gold, j) for j, e in enumerate(encoded) for ids, t, gold in pll_copies(e, tokenizer.mask_token_id)]
    scores = {name: torch.zeros(len(encoded), dtype=torch.float64) for name in heads}
    order = sorted(range(len(copies)), key=lambda k: len(copies[k][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        chunk = [copies[k] for k in order[start:start + batch_size]]
        width = max(len(c[0]) for c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, (seq, _, _, _) in enumerate(chunk):
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
        hidden, last = model.kind.run(model.backbone, ids.to(device), mask.to(device))
        reader = HeadReader(model, last.float(), {t: hidden[t].float() for t in taps}, mask.to(device))
        rows = torch.arange(len(chunk))
        cols = torch.tensor([c[1] for c in chunk])
        labels = torch.tensor([c[2] for c in chunk])
        owner = torch.tensor([c[3] for c in chunk])
        for name, head in heads.items():
            scores[name].index_add_(0, owner, reader.log_probs(head, rows, cols, labels).double())
    return scores
