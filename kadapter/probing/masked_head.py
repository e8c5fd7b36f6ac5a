"""The masked-LM probe head (BERT's MLM head, decoder tied to the frozen word embeddings) and the loader of a
checkpoint's own pre-trained MLM head, over the kit's backbone."""
from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from ..adapter import load_state_strict
from ..model import KAdapterModel


class MaskedLMProbeHead(nn.Module):
    """BERT's masked-LM head: dense -> activation -> LayerNorm -> decoder tied to the frozen word embeddings + bias.

    The word embeddings are *borrowed* from the backbone (not a registered parameter or buffer): they stay frozen,
    are not saved with the head, and the head always decodes into the backbone's own token space.
    """

    def __init__(self, hidden_size: int, word_embeddings: nn.Embedding, hidden_act: str = "gelu",
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        if word_embeddings.embedding_dim != hidden_size:
            raise ValueError(f"tied decoder needs embeddings of width {hidden_size}, got {word_embeddings.embedding_dim}")
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[hidden_act]
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))
        object.__setattr__(self, "_word_embeddings", word_embeddings)  # borrowed, not registered
        self.reset_parameters()

    @property
    def vocab_size(self) -> int:
        return self.bias.shape[0]

    def reset_parameters(self, std: float = 0.02) -> None:
        """As BERT initialises its MLM head."""
        nn.init.normal_(self.dense.weight, std=std)
        nn.init.zeros_(self.dense.bias)
        nn.init.ones_(self.layer_norm.weight)
        nn.init.zeros_(self.layer_norm.bias)
        nn.init.zeros_(self.bias)

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.activation(self.dense(features)))

    def decoder(self, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (frozen, tied) output embeddings and the bias, of every token or of ``token_ids`` only."""
        embeddings, bias = self._word_embeddings.weight.detach(), self.bias
        if token_ids is not None:
            embeddings, bias = embeddings[token_ids], bias[token_ids]
        return embeddings, bias

    def forward(self, features: torch.Tensor, token_ids: torch.Tensor | None = None,
                decoder: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits over the vocabulary, or over ``token_ids`` only (same values, less work when ranking a subset);
        ``decoder``: :meth:`decoder`'s output computed once for many calls."""
        h = self.transform(features)
        embeddings, bias = decoder if decoder is not None else self.decoder(token_ids)
        return h @ embeddings.to(h.dtype).T + bias

    def clone(self) -> "MaskedLMProbeHead":
        """A trainable copy of this head's weights over the same borrowed embeddings (not copied with it)."""
        twin = MaskedLMProbeHead(self.dense.in_features, self._word_embeddings, self.hidden_act, self.layer_norm_eps)
        twin.load_state_dict({k: v.detach().clone() for k, v in self.state_dict().items()})
        return twin.to(self.bias.device)

    def config(self) -> dict:
        return {"hidden_size": self.dense.in_features, "vocab_size": self.vocab_size,
                "hidden_act": self.hidden_act, "layer_norm_eps": self.layer_norm_eps}


# Where BERT-like and RoBERTa-like masked-LM checkpoints keep their head: our name -> their parameter name.
_PRETRAINED_HEAD_LAYOUTS = {
    "bert": {"dense.weight": "cls.predictions.transform.dense.weight",
             "dense.bias": "cls.predictions.transform.dense.bias",
             "layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
             "layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
             "bias": "cls.predictions.bias"},
    "roberta": {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
                "layer_norm.weight": "lm_head.layer_norm.weight", "layer_norm.bias": "lm_head.layer_norm.bias",
                "bias": "lm_head.bias"},
}


def pretrained_mlm_head(model: KAdapterModel, name_or_path: str) -> MaskedLMProbeHead:
    """The checkpoint's own masked-LM head as a :class:`MaskedLMProbeHead` over ``model``'s backbone.

    Raises ``ValueError`` when the checkpoint has no trained MLM head (e.g. the default MiniLM, whose
    ``cls.predictions`` weights would be newly initialised) or when its decoder is not tied to this backbone's
    word embeddings.
    """
    from transformers import AutoModelForMaskedLM

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report of a checkpoint without a head is what we check below
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    layout = _PRETRAINED_HEAD_LAYOUTS.get("roberta" if hasattr(mlm, "lm_head") else "bert")
    state = mlm.state_dict()
    wanted = list(layout.values())
    missing = sorted(set(info.get("missing_keys", ())) & set(wanted) | {k for k in wanted if k not in state})
    if missing:
        raise ValueError(f"{name_or_path} has no pre-trained masked-LM head: {missing} would be newly initialised; "
                         "train a probe head instead (recipe 'trained')")
    decoder = mlm.get_output_embeddings().weight
    embeddings = model.backbone.get_input_embeddings().weight
    if decoder.shape != embeddings.shape or not torch.equal(decoder.detach().cpu(), embeddings.detach().cpu()):
        raise ValueError(f"the MLM decoder of {name_or_path} is not this backbone's word embeddings")
    config = mlm.config
    head = MaskedLMProbeHead(model.hidden_size, model.backbone.get_input_embeddings(), config.hidden_act,
                             config.layer_norm_eps)
    load_state_strict(head, {ours: state[theirs].detach().clone() for ours, theirs in layout.items()}, name_or_path)
    return head
