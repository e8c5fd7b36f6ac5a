"""Task heads over K-Adapter's fused features, and the wrapper that puts a head on a ``KAdapterModel``.

A head reads ``KAdapterOutput.last_hidden_state`` (batch, seq, hidden) — the fused features — and never the backbone
itself, so the same head works on the backbone alone (no adapters: the backbone passes through the fusion), on one
adapter or on several. Every head returns a :class:`HeadOutput` with logits, and a loss when labels are given.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


@dataclass
class HeadOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


def _gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H), positions (B,) -> (B, H): the vector at each example's position."""
    if positions.dim() != 1 or positions.shape[0] != hidden.shape[0]:
        raise ValueError(f"expected one position per example, got shape {tuple(positions.shape)}")
    if (positions < 0).any() or (positions >= hidden.shape[1]).any():
        raise ValueError(f"marker position outside the sequence of length {hidden.shape[1]}: {positions.tolist()}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.long()]


def pool_sequence(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): the first position, or the last real token (``"last"``; needs the attention mask
    unless nothing is padded)."""
    if pooling == "first":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden[:, -1]
    from .backbone_kind import last_real_index

    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_real_index(attention_mask)]


def _check_class_labels(labels: torch.Tensor, num_labels: int, what: str) -> None:
    valid = labels[labels != IGNORE_INDEX]
    if valid.numel() and (valid.min() < 0 or valid.max() >= num_labels):
        bad = sorted({int(v) for v in valid[(valid < 0) | (valid >= num_labels)].tolist()})
        raise ValueError(f"{what} label(s) {bad} outside the head's {num_labels} classes (0..{num_labels - 1})")


class RelationClassificationHead(nn.Module):
    """The paper's relation head (also the fine-tuning RC head): the fused features at the opening subject marker
    ``@`` and object marker ``#`` are concatenated -> dense (2H -> H) -> dropout -> classifier, as the official
    ``dense`` -> dropout -> ``out_proj`` (no activation between them). Cross-entropy loss."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"relation classification needs at least 2 labels, got {num_labels}")
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * hidden_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states, attention_mask=None, *, subj_pos, obj_pos, labels=None) -> HeadOutput:
        pair = torch.cat([_gather_positions(hidden_states, subj_pos), _gather_positions(hidden_states, obj_pos)], -1)
        x = self.dropout(self.dense(pair))
        logits = self.classifier(x)
        loss = None
        if labels is not None:
            _check_class_labels(labels, self.num_labels, "relation")
            loss = F.cross_entropy(logits.float(), labels.long())
        return HeadOutput(logits, loss)


class DependencyHeadPredictor(nn.Module):
    """For every word, which sequence position is its head: a bilinear score between the word (as dependent) and
    every real position (as candidate head), plus a per-head prior, as in a biaffine parser's arc scorer
    (Dozat & Manning, 2017) without the MLP depth. Scores at padding are masked out; cross-entropy over positions
    on the labels of ``data_prep.dependency.encode_heads`` (-100 ignored)."""

    def __init__(self, hidden_size: int, arc_size: int = 256, dropout: float = 0.1):
        super().__init__()
        self.dependent = nn.Linear(hidden_size, arc_size)
        self.head = nn.Linear(hidden_size, arc_size)
        self.head_prior = nn.Linear(arc_size, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states, attention_mask, *, labels=None) -> HeadOutput:
        x = self.dropout(hidden_states)
        dep = F.gelu(self.dependent(x))
        head = F.gelu(self.head(x))
        # scores[b, i, j]: how likely position j is the head of the word at position i
        scores = dep @ head.transpose(1, 2) / dep.shape[-1] ** 0.5 + self.head_prior(head).transpose(1, 2)
        scores = scores.float().masked_fill(~attention_mask.bool()[:, None, :], torch.finfo(torch.float32).min)
        loss = None
        if labels is not None:
            _check_class_labels(labels, hidden_states.shape[1], "dependency-head position")
            if (labels != IGNORE_INDEX).any():
                loss = F.cross_entropy(scores.flatten(0, 1), labels.flatten().long(), ignore_index=IGNORE_INDEX)
            else:  # a batch whose words were all truncated away: nothing to learn, but keep the graph
                loss = scores.new_zeros(()) + 0.0 * sum(p.sum() for p in self.parameters())
        return HeadOutput(scores, loss)


class EntityTypingHead(nn.Module):
    """Entity typing (multi-label): the fused feature at the first ``@`` marker -> dropout -> linear.
    BCE-with-logits loss; a type is predicted when its logit > 0 (``kadapter.metrics.logits_to_label_sets``)."""

    def __init__(self, hidden_size: int, num_types: int, dropout: float = 0.1):
        super().__init__()
        self.num_types = num_types
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_types)

    def forward(self, hidden_states, attention_mask=None, *, entity_pos, labels=None) -> HeadOutput:
        logits = self.classifier(self.dropout(_gather_positions(hidden_states, entity_pos)))
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(f"entity-typing labels must be multi-hot of shape {tuple(logits.shape)}, "
                                 f"got {tuple(labels.shape)}")
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return HeadOutput(logits, loss)


class MultipleChoiceHead(nn.Module):
    """One score per (context, question + choice) sequence from one token of it; softmax over the choices.
    Takes the flattened (batch * choices, T, H) features and ``num_choices``; logits are (batch, choices).
    ``pooling``: ``"first"`` (encoders: the CLS token) or ``"last"`` (causal LMs: the last real token by the
    attention mask, whatever the padding side) — a backbone kind's ``sequence_pooling``.
    Layers as the official CosmosQA head: dropout -> Linear(H -> 1)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1, pooling: str = "first"):
        super().__init__()
        if pooling not in ("first", "last"):
            raise ValueError(f"pooling must be 'first' or 'last', got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.scorer = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states, attention_mask=None, *, num_choices: int, labels=None) -> HeadOutput:
        pooled = self.dropout(pool_sequence(hidden_states, attention_mask, self.pooling))
        logits = self.scorer(pooled).view(-1, num_choices)
        loss = None
        if labels is not None:
            _check_class_labels(labels, num_choices, "answer")
            loss = F.cross_entropy(logits.float(), labels.long())
        return HeadOutput(logits, loss)


class TaskModel(nn.Module):
    """A ``KAdapterModel`` (frozen backbone + adapters + fusion) with a task head on top.

    ``forward`` takes token ids or precomputed ``features`` (from the feature cache), plus the head's own inputs
    (``labels``, marker positions...). Multiple-choice inputs of shape (batch, choices, seq) are flattened for the
    encoder and ``num_choices`` is passed to the head. Trainable: adapters, fusion and head; never the backbone.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, features=None, **head_inputs):
        if input_ids is not None and input_ids.dim() == 3:  # multiple choice: (batch, choices, seq)
            head_inputs["num_choices"] = input_ids.shape[1]
            input_ids, attention_mask = input_ids.flatten(0, 1), attention_mask.flatten(0, 1)
            token_type_ids = token_type_ids.flatten(0, 1) if token_type_ids is not None else None
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           features=features)
        return self.head(out.last_hidden_state, out.attention_mask, **head_inputs)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.backbone.")}
